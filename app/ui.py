"""The Gradio review page: open a case, run a method, tune the threshold, correct, save, export.

Callbacks are thin: each calls one service function of `ReviewApp` and returns a dict of updates.
The viewer (app/static/viewer.js, NiiVue) holds the threshold and the mask in the browser; a scene
JSON tells it what to show, and Save first asks it for the mask on screen.
"""

from __future__ import annotations

import atexit
import json
import os
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from anomascope.app.bundles import ASSETS, calibration_summary, discover, model_dirs
from anomascope.app.export import FORMATS
from anomascope.app.pacs import Pacs
from anomascope.app.review import ReviewApp, ReviewSession, friendly, markdown_text
from anomascope.app.signin import ReaderGate, SignInGuard, SignInPolicy
from anomascope.app.tuning import curves_figure
from anomascope.app.tuning_session import (
    DATABASE,
    PACS_SOURCE,
    ROOTS_ENV,
    CaseAgreement,
    CaseNotOpened,
    SessionSummary,
    TuningService,
    TuningView,
    worklist_roots,
)
from anomascope.app.uploads import uploaded
from anomascope.app.viewer import STATIC, niivue_script_tags
from anomascope.engine.io import SUPPORTED, ReadLimits, quiet_reader_libraries
from anomascope.engine.tuning import Criterion
from anomascope.storage import Database, has_accounts

SAMPLES = ASSETS / "samples"
SINGLE_USER = (
    "**Single-user mode.** No reader accounts exist, so anyone who can open this page can read and save "
    "every annotation, under any name. Add accounts with `anomascope users add NAME` to require sign-in."
)
SIGNED_IN = "Readers sign in; every run and annotation is saved under the signed-in reader's name."
NO_COMPARISON = 0  # the comparison menu's "none" (saved versions count from 1)
HISTORY_HEADERS = ["what", "id", "when", "who / method", "details", "label · note"]
AGREEMENT_HEADERS = ["case", "readers", "Dice between readers", "thresholds", "threshold spread"]
WORKLIST_HEADERS = ["case", "file", "modality", "shape", "runs", "saved", "opened"]
PACS_HEADERS = ["patient", "patient ID", "date", "description", "modalities", "accession", "study UID"]
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


def data_dir() -> Path:
    return Path(os.environ.get("ANOMASCOPE_DATA_DIR", "data"))


def build_app(review_app: ReviewApp | None = None, login: bool = False) -> gr.Blocks:
    """The page; with `login` every reader signs in (serve passes `auth`) and saves under that name."""
    quiet_reader_libraries()
    app = review_app or default_review_app()
    for store in (app.volumes, app.exports):  # patient images never outlive the server
        atexit.register(store.remove)
    catalogue = app.catalogue
    folder_roots = worklist_roots()
    tuning_service = TuningService(app, folder_roots=folder_roots)

    def method_text(choice) -> str:
        """The bundle's calibration, and where each site threshold it offers came from."""
        notes = app.site_preset_notes(choice) if choice else ""
        return _method_info(catalogue, choice) + (f"\n{notes}" if notes else "")

    gr.set_static_paths([STATIC, app.volumes.root])
    samples = sorted(str(p) for p in SAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".png", ".dcm", ".nii", ".gz"))

    # Patient images uploaded through the page leave Gradio's cache after an hour, and when it stops.
    with gr.Blocks(title="Anomascope", delete_cache=(600, 3600)) as demo:
        session = gr.State(ReviewSession(), delete_callback=lambda s: app.volumes.drop(s.token))
        tuning = gr.State(None)  # the reader's TuningView while a tuning session runs
        summary_state = gr.State(None)  # the last SessionSummary, whose proposal "save" stores
        scene = gr.Textbox(visible="hidden", elem_id="scene")
        payload = gr.Textbox(visible="hidden", elem_id="payload")
        comparison = gr.Textbox(visible="hidden", elem_id="comparison")
        second_scene = gr.Textbox(visible="hidden", elem_id="second-scene")
        panes = gr.Textbox(visible="hidden", elem_id="panes")
        upcoming = gr.Textbox(visible="hidden", elem_id="upcoming")  # the tuning session's next case, ahead
        with gr.Sidebar(label="Open a case", open=True, width=600, elem_id="open-panel") as open_panel:
            gr.Markdown("### Open a case")
            upload = gr.File(label="A file (a DICOM series as .zip)", type="filepath", elem_id="upload")
            folder = gr.File(
                label="…or a folder holding one DICOM series",
                file_count="directory",
                type="filepath",
                elem_id="folder",
            )
            if samples:
                gr.Examples(samples, inputs=upload, label="Demo cases")
            with gr.Accordion("Worklist: cases in the database (click a row to open it)", open=True):
                worklist = gr.Dataframe(
                    headers=WORKLIST_HEADERS,
                    value=app.worklist(),
                    interactive=False,
                    wrap=True,
                    elem_id="worklist",
                )
            with gr.Accordion("Threshold-tuning session", open=False):
                tuning_source = gr.Textbox(
                    label=f"Worklist: a folder of images (X_mask.png beside an image is its ground truth), "
                    f"a prepared split, '{DATABASE}', or '{PACS_SOURCE}' and a patient name, ID or accession"
                    " number (the PACS's image series)",
                    info=f"Server folders under: {', '.join(map(str, folder_roots))}."
                    if folder_roots
                    else f"No server folders are offered: an administrator lists them in {ROOTS_ENV}.",
                    elem_id="tuning-source",
                )
                tuning_start = gr.Button("Start a session with the method picked", elem_id="tuning-start")
            with gr.Accordion(f"PACS: {app.pacs.url}" if app.pacs else "PACS", open=False, visible=bool(app.pacs)):
                pacs_text = gr.Textbox(
                    label="Patient name, patient ID or accession number (empty: all)", elem_id="pacs-text"
                )
                pacs_search = gr.Button("Search studies", elem_id="pacs-search")
                pacs_studies = gr.Dataframe(
                    headers=PACS_HEADERS, interactive=False, elem_id="pacs-studies", label="Click a study"
                )
                pacs_study = gr.State("")
                pacs_series = gr.Dropdown([], label="Series of the study", elem_id="pacs-series")
                pacs_open = gr.Button("Open the series", elem_id="pacs-open")
        gr.Markdown(f"**Anomascope** — anomaly map review. {SIGNED_IN if login else SINGLE_USER}", elem_id="mode")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=560):
                message = gr.Markdown(
                    "Open an image (" + SUPPORTED + ") from the panel on the left, pick a trained method and press "
                    "**Run**.",
                    elem_id="message",
                )
                gr.HTML(
                    html_template=VIEWER_HTML,
                    css_template=VIEWER_CSS,
                    head=niivue_script_tags() + PAGE_STYLE,
                    js_on_load="window.anomascope.mount(element);",
                    elem_id="viewer",
                )
            with gr.Column(scale=1, min_width=320, elem_id="workbench"):
                # Until a case is open, the method offered is the best for colour photos, what most readers
                # open first; opening a case picks the method trained on images nearest it (Catalogue.choice_for).
                first_choice = catalogue.best_choice(lambda label: catalogue.takes(label, 3)) or catalogue.best_choice()
                method = gr.Dropdown(
                    list(catalogue.choices),
                    label="Method (trained bundle or training-free reference)",
                    value=first_choice,
                    elem_id="method",
                )
                run = gr.Button("Run", variant="primary", elem_id="run")
                score = gr.Markdown("", elem_id="score")
                with gr.Column(visible=False, elem_id="tuning-bar") as tuning_bar:
                    tuning_progress = gr.Markdown("", elem_id="tuning-progress")
                    with gr.Row():
                        tuning_previous = gr.Button("◀ Previous (Alt+←)", size="sm", elem_id="tuning-previous")
                        tuning_next = gr.Button("Next ▶ (Alt+→)", size="sm", elem_id="tuning-next")
                warning = gr.Markdown("", visible=False, elem_id="warning")
                acknowledge = gr.Checkbox(label="I have read the warning above", visible=False, elem_id="acknowledge")
                reader = gr.Textbox(
                    label="Reader (signed in)" if login else "Reader", elem_id="reader", interactive=not login
                )
                with gr.Row():
                    label = gr.Textbox(label="Label", placeholder="e.g. lesion, artefact", min_width=120)
                    note = gr.Textbox(label="Note", min_width=120)
                save = gr.Button("Save annotation (the mask on screen)", variant="primary", elem_id="save")
                save_status = gr.Markdown("", elem_id="save-status")
                pacs_send = gr.Button(
                    "Send the saved annotation to the PACS (Segmentation and Parametric Map)",
                    visible=bool(app.pacs),
                    elem_id="pacs-send",
                )
                mask_source = gr.Markdown("", elem_id="mask-source")
                versions = gr.Dropdown(
                    [], label="Saved versions of this case's annotation", visible=False, elem_id="versions"
                )
                compare = gr.Dropdown(
                    [], label="Compare with a saved version (magenta outline)", visible=False, elem_id="compare"
                )
                with gr.Accordion("About this method", open=True):
                    method_info = gr.Markdown(method_text(first_choice), elem_id="method-info")
                with gr.Accordion("Compare two methods side by side", open=False):
                    second_method = gr.Dropdown(
                        list(catalogue.choices),
                        label="Second method (shown right of the first)",
                        elem_id="second-method",
                    )
                    second_run = gr.Button("Run it beside the first", elem_id="second-run")
                    second_swap = gr.Button("Correct and save the second method's mask instead", elem_id="second-swap")
                    second_close = gr.Button("Close the second pane", elem_id="second-close")
        with gr.Tabs():
            with gr.Tab("Tuning summary"):
                with gr.Row():
                    criterion = gr.Textbox(
                        value="dice",
                        label="Criterion: dice (max mean Dice), sensitivity=S or fpr=F (on normal cases)",
                        elem_id="criterion",
                    )
                    summarise = gr.Button("Summarise the session", elem_id="summarise")
                summary_text = gr.Markdown("", elem_id="summary")
                readers_plot = gr.Plot(label="Against the readers' saved masks", elem_id="readers-plot")
                truth_plot = gr.Plot(label="Against ground truth", visible=False, elem_id="truth-plot")
                agreement = gr.Dataframe(
                    headers=AGREEMENT_HEADERS,
                    label="Readers against each other (latest masks of every tuning session with this method)",
                    interactive=False,
                    elem_id="agreement",
                )
                with gr.Row():
                    preset_name = gr.Textbox(label="Site threshold name", elem_id="preset-name")
                    save_preset = gr.Button("Save the proposed site threshold", elem_id="save-preset")
                preset_status = gr.Markdown("", elem_id="preset-status")
            with gr.Tab("History"):
                history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, elem_id="history")
            with gr.Tab("Export"):
                with gr.Row():
                    export_buttons = {
                        fmt: gr.Button(f"Export {fmt.upper()}", elem_id=f"export-{fmt}") for fmt in FORMATS
                    }
                download = gr.File(label="Download", interactive=False)
        if catalogue.unavailable:
            gr.Markdown(
                "**Bundles that could not be loaded:**\n"
                + "\n".join(f"- `{k}`: {v}" for k, v in catalogue.unavailable.items())
            )

        def shown(state: ReviewSession, previous: ReviewSession | None, text: str) -> dict:
            """Every view of the page for `state`, replacing whatever the previous case left."""
            state, described = app.scene(state, previous.token if previous else None)
            run_view = state.run
            return {
                session: state,
                scene: json.dumps(described),
                message: text,
                score: app.score_text(state) if run_view else "",
                warning: gr.update(value="\n".join(f"⚠️ {w}" for w in state.warnings), visible=bool(state.warnings)),
                acknowledge: gr.update(value=False, visible=bool(state.warnings)),
                mask_source: app.mask_source(state),
                versions: _versions_update(state),
                compare: _compare_update(state, reset=True),
                comparison: "",
                history: app.history(state),
                worklist: app.worklist(),
                save_status: "",
            }

        view_outputs = [
            session,
            scene,
            message,
            score,
            warning,
            acknowledge,
            mask_source,
            versions,
            compare,
            comparison,
            history,
            worklist,
            save_status,
        ]

        def failed(previous: ReviewSession, exc: Exception) -> dict:
            return shown(ReviewSession(), previous, friendly(exc))

        def opened(state: ReviewSession) -> str:
            info = state.case.summary()
            return (
                f"Opened **{Path(state.case.source).name}** (case {state.case_id}): {info['format']}, "
                f"modality {info['modality']}, shape {info['shape']}, spacing {info['spacing'] or 'unknown'} mm."
                + (f" Showing its latest saved annotation (version {state.saved.version})." if state.saved else "")
            )

        def actor(typed: str, request: gr.Request) -> str:
            """Who acts: the signed-in reader, never a typed name, when accounts exist."""
            return (request.username or "") if login else (typed or "")

        def opened_view(state: ReviewSession, previous: ReviewSession, choice) -> dict:
            """The opened case, and the method trained on images nearest it unless the one picked is as near."""
            view = shown(state, previous, opened(state))
            picked = catalogue.choice_for(state.case, choice)
            if picked is None or picked == choice:
                return view
            said = f"{view[message]} {markdown_text(catalogue.why_picked(picked))}; choose another above."
            return {**view, message: said, method: picked, method_info: method_text(picked)}

        def collapsed(view: dict) -> dict:
            """An opened case gets the whole screen: the panel it was opened from folds away."""
            return {**view, open_panel: gr.Sidebar(open=False)}

        def on_upload(path, who, previous: ReviewSession, choice, request: gr.Request):
            if not path:
                return {message: gr.update()}
            try:
                return collapsed(
                    opened_view(
                        app.open_file(uploaded(path, get_upload_folder()), actor(who, request)), previous, choice
                    )
                )
            except Exception as exc:  # every failure becomes a sentence on the page
                return failed(previous, exc)

        def on_folder(paths, who, previous: ReviewSession, choice, request: gr.Request):
            if not paths:
                return {message: gr.update()}
            try:
                files = [str(uploaded(path, get_upload_folder())) for path in paths]
                return collapsed(opened_view(app.open_folder(files, actor(who, request)), previous, choice))
            except Exception as exc:
                return failed(previous, exc)

        def on_worklist(previous: ReviewSession, choice, event: gr.SelectData):
            try:
                return collapsed(opened_view(app.open_saved(int(event.row_value[0])), previous, choice))
            except Exception as exc:
                return failed(previous, exc)

        def on_pacs_search(text):
            try:
                rows = app.pacs_studies(text)
            except Exception as exc:
                return {message: friendly(exc)}
            said = f"{len(rows)} studies found on the PACS." if rows else "No study on the PACS matches."
            return {pacs_studies: rows, pacs_series: gr.update(choices=[], value=None), pacs_study: "", message: said}

        def on_pacs_study(event: gr.SelectData):
            study_uid = str(event.row_value[-1])
            try:
                series = app.pacs_series(study_uid)
            except Exception as exc:
                return {message: friendly(exc)}
            first = series[0][1] if series else None
            return {pacs_study: study_uid, pacs_series: gr.update(choices=series, value=first)}

        def on_pacs_open(study_uid, series_uid, who, previous: ReviewSession, choice, request: gr.Request):
            try:
                return collapsed(
                    opened_view(app.open_pacs_series(study_uid, series_uid, actor(who, request)), previous, choice)
                )
            except Exception as exc:
                return failed(previous, exc)

        def on_pacs_send(state: ReviewSession, who, request: gr.Request):
            try:
                said = app.send_to_pacs(state, actor(who, request))
            except Exception as exc:  # the annotation stays saved here; the reader may send it again
                said = friendly(exc)
            return {save_status: said, message: said}

        open_outputs = [*view_outputs, method, method_info, open_panel]
        upload.change(on_upload, [upload, reader, session, method], open_outputs).then(None, scene, None, js=SHOW_SCENE)
        folder.change(on_folder, [folder, reader, session, method], open_outputs).then(None, scene, None, js=SHOW_SCENE)
        worklist.select(on_worklist, [session, method], open_outputs).then(None, scene, None, js=SHOW_SCENE)
        pacs_search.click(on_pacs_search, pacs_text, [pacs_studies, pacs_series, pacs_study, message])
        pacs_text.submit(on_pacs_search, pacs_text, [pacs_studies, pacs_series, pacs_study, message])
        pacs_studies.select(on_pacs_study, None, [pacs_study, pacs_series, message])
        pacs_open.click(on_pacs_open, [pacs_study, pacs_series, reader, session, method], open_outputs).then(
            None, scene, None, js=SHOW_SCENE
        )
        pacs_send.click(on_pacs_send, [session, reader], [save_status, message])

        def on_run(state: ReviewSession, choice, who, request: gr.Request):
            try:
                ran = app.run(state, choice, actor(who, request))
            except Exception as exc:
                return {message: friendly(exc)}
            return shown(ran, state, f"**{choice}** ran; move the threshold, correct the mask and save.")

        run.click(on_run, [session, method, reader], view_outputs).then(None, scene, None, js=SHOW_SCENE)

        def on_method(state: ReviewSession, choice):
            info = method_text(choice)
            if state.run is None or state.run.label == choice:
                return {method_info: info}
            # The old result must not stay on screen under the new method's name.
            cleared = replace(state, run=None, second=None, token=None, warnings=[])
            return {**shown(cleared, state, f"Press **Run** to score this image with {choice}."), method_info: info}

        method.change(on_method, [session, method], [*view_outputs, method_info]).then(None, scene, None, js=SHOW_SCENE)

        def on_version(state: ReviewSession, version):
            if version is None or state.saved is None or version == state.saved.version:
                return {message: gr.update()}
            try:
                picked = app.show_version(state, int(version))
            except Exception as exc:
                return {message: friendly(exc)}
            return shown(picked, state, f"Showing saved version {version}.")

        versions.input(on_version, [session, versions], view_outputs).then(None, scene, None, js=SHOW_SCENE)

        def on_compare(state: ReviewSession, version):
            try:
                spec = app.comparison(state, None if version in (None, NO_COMPARISON) else int(version))
            except Exception as exc:
                return {message: friendly(exc), comparison: ""}
            return {comparison: json.dumps(spec) if spec else ""}

        compare.input(on_compare, [session, compare], [message, comparison]).then(
            None, comparison, None, js=SHOW_COMPARISON
        )

        def on_second_run(state: ReviewSession, choice, who, request: gr.Request):
            try:
                state, spec = app.run_second(state, choice, actor(who, request))
            except Exception as exc:
                return {message: friendly(exc), second_scene: ""}
            return {
                session: state,
                second_scene: json.dumps(spec),
                message: f"**{choice}** is on the right, at the same slice, zoom, pan and window; the mask you "
                f"correct and save is {state.run.label}'s (on the left) until you swap them.",
                history: app.history(state),
            }

        second_outputs = [session, second_scene, message, history]
        second_run.click(on_second_run, [session, second_method, reader], second_outputs).then(
            None, second_scene, None, js=SHOW_SECOND
        )

        def on_swap(state: ReviewSession, sent):
            if not sent:
                return {message: "Nothing swapped: compare two methods first (or keep the edits on screen)."}
            try:
                swapped = app.swap_sides(state, sent)
            except Exception as exc:
                return {message: friendly(exc)}
            return shown(swapped, state, f"Correcting **{swapped.run.label}** now; saving records its run.")

        second_swap.click(None, None, panes, js=READ_PANES).then(on_swap, [session, panes], view_outputs).then(
            None, scene, None, js=SHOW_SCENE
        )

        def on_second_close(state: ReviewSession):
            return {session: app.close_second(state), second_scene: ""}

        second_close.click(on_second_close, session, [session, second_scene]).then(
            None, second_scene, None, js=SHOW_SECOND
        )

        def unopened(exc: CaseNotOpened):
            """The session moves on to the case that failed, and says why; Next goes past it."""
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            reason = friendly(cause).removeprefix("⚠️ ")
            progress = markdown_text(exc.view.progress)
            said = f"⚠️ Tuning session: {progress} could not be opened: {reason.rstrip('.')}."
            said += " The case on screen is the one before; Next goes on to the next case."
            return {message: said, tuning: exc.view, tuning_progress: progress}

        def on_tuning_start(source, choice, who, previous: ReviewSession, request: gr.Request):
            try:
                view = tuning_service.start(source or "", choice, actor(who, request))
                view, state = tuning_service.open(view, 0, actor(who, request))
            except CaseNotOpened as exc:
                return {**unopened(exc), tuning_bar: gr.Column(visible=True)}
            except Exception as exc:
                return {message: friendly(exc)}
            progress = markdown_text(view.progress)
            said = f"Tuning session started: {progress}. Settle the threshold, correct the mask, save, then Next."
            return {
                **collapsed(shown(state, previous, said)),
                tuning: view,
                tuning_progress: progress,
                tuning_bar: gr.Column(visible=True),
            }

        def tuning_stepper(delta: int):
            def on_step(view: TuningView | None, who, previous: ReviewSession, request: gr.Request):
                if view is None:
                    return {message: "Start a tuning session first."}
                try:
                    view, state = tuning_service.step(view, delta, actor(who, request))
                except CaseNotOpened as exc:
                    return unopened(exc)
                except Exception as exc:
                    return {message: friendly(exc)}
                return {
                    **shown(state, previous, f"Tuning session: {markdown_text(view.progress)}."),
                    tuning: view,
                    tuning_progress: markdown_text(view.progress),
                }

            return on_step

        def on_preview(view: TuningView | None, state: ReviewSession) -> str:
            """The next case, ready for the viewer before the reader steps on (nothing of it is stored)."""
            preview = tuning_service.preview(view) if view is not None and state.token else None
            return json.dumps({**preview, "after": state.token}) if preview else ""

        tuning_outputs = [*view_outputs, tuning, tuning_progress]
        tuning_start.click(
            on_tuning_start, [tuning_source, method, reader, session], [*tuning_outputs, tuning_bar, open_panel]
        ).then(None, scene, None, js=SHOW_SCENE).then(on_preview, [tuning, session], upcoming).then(
            None, upcoming, None, js=PREFETCH
        )
        # Next puts the case loaded ahead on screen at once; the server's step follows and confirms it.
        tuning_next.click(None, None, None, js=ADVANCE)
        for button, delta in ((tuning_previous, -1), (tuning_next, +1)):
            button.click(tuning_stepper(delta), [tuning, reader, session], tuning_outputs).then(
                None, scene, None, js=SHOW_SCENE
            ).then(on_preview, [tuning, session], upcoming).then(None, upcoming, None, js=PREFETCH)

        def on_summarise(view: TuningView | None, text):
            if view is None:
                return {summary_text: "Start a tuning session and save some cases first."}
            try:
                summary = tuning_service.summary(view, Criterion.parse((text or "").strip()))
                agreements = tuning_service.readers_agreement(view)
            except Exception as exc:
                return {summary_text: friendly(exc)}
            return {
                summary_state: summary,
                summary_text: _summary_text(summary) + _agreement_text(agreements),
                agreement: _agreement_rows(agreements),
                readers_plot: curves_figure(summary.readers, "Against the readers' saved masks"),
                truth_plot: gr.update(
                    value=curves_figure(summary.truth, "Against ground truth") if summary.truth else None,
                    visible=summary.truth is not None,
                ),
            }

        summarise.click(
            on_summarise, [tuning, criterion], [summary_state, summary_text, readers_plot, truth_plot, agreement]
        )

        def on_save_preset(view: TuningView | None, summary: SessionSummary | None, name, who, request: gr.Request):
            if view is None or summary is None:
                return {preset_status: "Summarise a tuning session first."}
            try:
                preset = tuning_service.save_threshold(view, summary, name, actor(who, request))
            except Exception as exc:
                return {preset_status: friendly(exc)}
            return {
                preset_status: f"Saved site threshold **{preset.name}** version {preset.version} = {preset.value:.4g} "
                f"({preset.criterion} = {preset.figure:.4g} on {preset.n_cases} cases); the next run offers it.",
                method_info: method_text(view.label),
            }

        save_preset.click(on_save_preset, [tuning, summary_state, preset_name, reader], [preset_status, method_info])

        def on_save(
            state: ReviewSession, sent, who, lab, text, acknowledged, view: TuningView | None, request: gr.Request
        ):
            try:
                if view is not None and state.case_id == view.case_id:
                    state, said = tuning_service.save(view, state, sent, actor(who, request), lab, text, acknowledged)
                else:
                    state, said = app.save(state, sent, actor(who, request), lab, text, acknowledged)
            except Exception as exc:
                return {save_status: friendly(exc)}
            return {
                session: state,
                save_status: said,
                message: said,
                history: app.history(state),
                worklist: app.worklist(),
                mask_source: app.mask_source(state),
                versions: _versions_update(state),
                compare: _compare_update(state),
            }

        # The mask is read from the viewer at the moment of the click, then saved as it was.
        save.click(None, None, payload, js=READ_MASK).then(
            on_save,
            [session, payload, reader, label, note, acknowledge, tuning],
            [session, save_status, message, history, worklist, mask_source, versions, compare],
        )

        def exporter(fmt):
            def run_export():
                try:
                    return {download: app.export_file(fmt), message: f"Exported annotations as {fmt.upper()}."}
                except Exception as exc:
                    return {message: friendly(exc)}

            return run_export

        for fmt, button in export_buttons.items():
            button.click(exporter(fmt), None, [download, message])

        def signed_in(request: gr.Request) -> str:
            return request.username or ""

        demo.load(None, None, None, js=TUNING_KEYS)
        if login:
            demo.load(signed_in, None, reader)
    return demo


def serve(app: ReviewApp, host: str, port: int, concurrency: int = 4, block: bool = True) -> gr.Blocks:
    """Start the page: sign-in when reader accounts exist (every request's account checked, failed sign-ins
    slowed and locked: app/signin.py), `concurrency` events at once (a slow upload or
    inference never holds up the other readers), uploads capped at ANOMASCOPE_MAX_BYTES."""
    login = has_accounts(app.db)
    demo = build_app(app, login=login)
    demo.queue(default_concurrency_limit=concurrency)
    guard = SignInGuard(app.db, SignInPolicy.from_env()) if login else None
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        prevent_thread_lock=not block,
        quiet=not block,
        max_file_size=ReadLimits.from_env().max_bytes,
        auth=guard.check if guard else None,
        app_kwargs={"middleware": [Middleware(ReaderGate, db=app.db)]} if login else None,
    )
    return demo


def default_review_app(pacs: Pacs | None = None) -> ReviewApp:
    """The review services on the data folder's database, the installed bundles and the CPU or GPU, with
    `pacs` to search and send to."""
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return ReviewApp(Database(), discover(model_dirs()), folder / "cases", pacs=pacs)


def _summary_text(summary: SessionSummary) -> str:
    """The proposals in words: against the readers' masks (what "save" stores) and against ground truth."""
    readers = summary.readers
    findings = int(readers.curves.has_finding.sum())
    text = (
        f"Proposed site threshold **{readers.threshold:.4g}** by {readers.criterion} = {readers.figure:.4g}, "
        f"against the readers' saved masks on {readers.n_cases} cases ({findings} with findings); "
        f"bands are 95% bootstrap intervals over {readers.resamples} resamples of cases."
    )
    if summary.truth is not None:
        truth = summary.truth
        text += (
            f"\n\nAgainst ground truth ({truth.n_cases} cases): {truth.threshold:.4g} by {truth.criterion} = "
            f"{truth.figure:.4g}."
        )
    return text


def _agreement_text(agreements: list[CaseAgreement]) -> str:
    if not agreements:
        return "\n\nReaders against each other: no case has masks from two readers with this method yet."
    dice = [a.dice for a in agreements]
    spreads = [a.threshold_spread for a in agreements if a.threshold_spread is not None]
    text = (
        f"\n\nReaders against each other on {len(agreements)} cases: mean Dice between readers "
        f"{np.mean(dice):.3f} (lowest {min(dice):.3f})"
    )
    return text + (f", median threshold spread {np.median(spreads):.4g}." if spreads else ".")


def _agreement_rows(agreements: list[CaseAgreement]) -> list[list]:
    return [
        [
            a.name,
            ", ".join(a.readers),
            round(a.dice, 4),
            ", ".join("—" if t is None else f"{t:.4g}" for t in a.thresholds),
            "—" if a.threshold_spread is None else f"{a.threshold_spread:.4g}",
        ]
        for a in agreements
    ]


def _versions_update(state: ReviewSession) -> dict:
    """The saved-versions menu for the session: every version of its lineage, the one on screen picked."""
    return gr.update(
        choices=[(f"version {v.version} · annotation {v.annotation_id}", v.version) for v in state.versions],
        value=state.saved.version if state.saved else None,
        visible=bool(state.versions),
    )


def _compare_update(state: ReviewSession, reset: bool = False) -> dict:
    """The comparison menu: none, or any saved version of the lineage; a save keeps what is picked."""
    choices = [("no comparison", NO_COMPARISON)] + [(f"version {v.version}", v.version) for v in state.versions]
    if reset:
        return gr.update(choices=choices, visible=bool(state.versions), value=NO_COMPARISON)
    return gr.update(choices=choices, visible=bool(state.versions))


def _method_info(catalogue, choice) -> str:
    if not catalogue.choices:
        return "No trained bundles found: train one with `anomascope train` (see the README)."
    if choice not in catalogue.choices:
        return ""
    picked = catalogue.choices[choice]
    return calibration_summary(picked.bundle, picked.method)
