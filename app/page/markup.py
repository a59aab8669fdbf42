"""What the page's HTML carries besides components: the viewer's markup and style, the page's own style, and
the JavaScript its events run in the browser (app/static/viewer.js's `window.anomascope`)."""

from __future__ import annotations

COLOURMAPS = ["inferno", "viridis", "hot", "jet", "plasma", "turbo"]
SHOW_SCENE = "(scene) => { window.anomascope.show(scene ? JSON.parse(scene) : null); }"
READ_MASK = "() => window.anomascope.payload()"
# Alt+→ and Alt+← step a tuning session (the viewer keeps the plain arrows for slices).
TUNING_KEYS = """() => {
  document.addEventListener("keydown", (event) => {
    if (!event.altKey || !["ArrowRight", "ArrowLeft"].includes(event.key)) return;
    const button = document.querySelector(event.key === "ArrowRight" ? "#tuning-next" : "#tuning-previous");
    if (!button) return;
    event.preventDefault();
    event.stopPropagation();
    button.click();
  }, true);
}"""
PREFETCH = "(spec) => { window.anomascope.prefetch(spec ? JSON.parse(spec) : null); }"
ADVANCE = "() => { window.anomascope.advance(); }"
SHOW_COMPARISON = "(spec) => { window.anomascope.compare(spec ? JSON.parse(spec) : null); }"
SHOW_SECOND = "(spec) => { window.anomascope.showSecond(spec ? JSON.parse(spec) : null); }"
READ_PANES = "() => window.anomascope.panes()"


VIEWER_HTML = """
<div class="as-viewer" tabindex="0">
  <div class="as-title">No image open</div>
  <div class="as-controls" hidden>
    <div class="as-row">
      <button type="button" data-tool="navigate" title="Left drag: crosshair; right drag: window/level;
middle or Ctrl+left drag: pan; wheel or arrow keys: slices; Ctrl+wheel: zoom">Navigate</button>
      <button type="button" data-tool="brush">Brush</button>
      <button type="button" data-tool="eraser">Eraser</button>
      <button type="button" data-tool="fill" title="Draw a closed outline; it is filled">Fill outline</button>
      <label>size <input class="as-brush-size" type="number" min="0.1" step="0.5" value="3"></label>
      <span class="as-brush-unit">px</span>
      <button type="button" class="as-undo" title="Ctrl+Z">Undo</button>
      <button type="button" class="as-redo" title="Ctrl+Y">Redo</button>
      <button type="button" class="as-zoom-in">Zoom +</button>
      <button type="button" class="as-zoom-out">Zoom −</button>
      <button type="button" class="as-zoom-fit">Fit</button>
    </div>
    <div class="as-row as-threshold-row">
      <label>Threshold <input class="as-threshold" type="range"></label>
      <input class="as-threshold-number" type="number" step="any">
      <span>chosen by <b class="as-threshold-method"></b></span>
      <span class="as-threshold-note" role="status"></span>
      <span class="as-presets"></span>
    </div>
    <div class="as-row as-second-row" hidden>
      <label>Threshold of <b class="as-second-label"></b> (right pane)
        <input class="as-second-threshold" type="range"></label>
      <input class="as-second-threshold-number" type="number" step="any">
      <span>chosen by <b class="as-second-threshold-method"></b></span>
      <span class="as-second-threshold-note" role="status"></span>
      <span class="as-second-presets"></span>
    </div>
    <div class="as-row">
      <label class="as-heatmap-row">Heatmap opacity
        <input class="as-opacity" type="range" min="0" max="1" step="0.05" value="0.5"></label>
      <label class="as-heatmap-row">colour map <select class="as-colormap">COLOURMAP_OPTIONS</select></label>
      <label class="as-window-row">Window <select class="as-window"></select></label>
    </div>
    <div class="as-verdict"></div>
    <div class="as-compare" hidden></div>
  </div>
  <div class="as-views">
    <div class="as-main"><canvas></canvas></div>
    <div class="as-second-box" hidden><div class="as-caption as-second-title"></div><canvas></canvas></div>
    <div class="as-side" hidden>
      <div class="as-restoration-box"><div class="as-caption as-restoration-caption"></div>
        <canvas></canvas></div>
      <div class="as-uncertainty-box"><div class="as-caption">Uncertainty</div><canvas></canvas></div>
    </div>
  </div>
  <div class="as-row as-status"><span class="as-area"></span> <span class="as-location"></span></div>
</div>
""".replace("COLOURMAP_OPTIONS", "".join(f"<option>{name}</option>" for name in COLOURMAPS))

VIEWER_CSS = """
.as-viewer [hidden] { display: none !important; }
.as-viewer { outline: none; }
.as-title { font-weight: 600; margin-bottom: 4px; }
.as-row { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 3px 0; }
.as-row button { padding: 1px 8px; border: 1px solid #999; border-radius: 4px; font-size: 13px; font-weight: 500;
  line-height: 1.5; }
.as-row label, .as-row span { font-size: 13px; }
.as-row input[type=number], .as-row select { height: 26px; padding: 0 4px; font-size: 13px; }
.as-row select { padding-right: 22px; min-width: 7.5em; }
.as-row button.as-active { background: #2a7; color: white; }
.as-brush-size, .as-threshold-number { width: 7em; }
.as-threshold-note, .as-second-threshold-note { color: #b45309; }
.as-threshold-note:empty, .as-second-threshold-note:empty { display: none; }
.as-threshold { width: 16em; }
.as-verdict { font-weight: 600; }
.as-compare { color: #c0c; }
/* viewer.js sizes the views to reach the bottom of the reader's window (fitViews). */
.as-views { display: flex; gap: 8px; height: 60vh; min-height: 280px; }
.as-status { min-height: 1.4em; }
.as-main { flex: 2; min-width: 0; overflow: hidden; }
.as-side { flex: 1; min-width: 0; display: flex; flex-direction: column; gap: 6px; overflow: hidden; }
.as-second-box { flex: 2; min-width: 0; position: relative; overflow: hidden; }
.as-restoration-box, .as-uncertainty-box { flex: 1; min-height: 0; position: relative; overflow: hidden; }
.as-caption { position: absolute; top: 2px; left: 6px; z-index: 1; color: #ddd; font-size: 12px; }
.as-restoration-box canvas, .as-uncertainty-box canvas,
.as-second-box canvas { position: absolute; inset: 0; width: 100%; height: 100%; }
.as-main canvas { width: 100%; height: 100%; }
"""


# Rules for the page around the viewer (the viewer's own CSS is scoped to it): the worklist's columns fit
# the open panel whole.
PAGE_STYLE = """<style>
#worklist th, #worklist td { font-size: 12px; }
#worklist td span { overflow-wrap: anywhere; }
#worklist .cell-menu-button { display: none; }
</style>"""
