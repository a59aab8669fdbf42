// The review page's image viewer: NiiVue (shipped beside this file) holding the case, the heatmap
// overlay and the mask as NiiVue's drawing layer. The threshold, the brush and undo act here, in the
// browser; the server receives the mask only when the reader saves, as the exact bitmap on screen.
//
// Voxel order is the one app/viewer.py writes: x = image column, y = rows counted from the bottom,
// z = slice, with a positive diagonal affine so that NiiVue's RAS order is the file order and
// drawBitmap[x + y*W + z*W*H] is voxel (x, y, z).
(function () {
  "use strict";
  const MASK = 1; // drawing-layer value of a mask voxel (0 is background)
  const MASK_LUT = { R: [0, 0], G: [0, 255], B: [0, 120], A: [0, 255], I: [0, 1], labels: ["", "mask"] };
  const UNDO_LIMIT = 50;
  const COMPARE_LUT = "anomascope-compare"; // an earlier saved version's outline, in magenta

  const viewer = {
    nv: null, restoration: null, uncertainty: null, root: null,
    scene: null, heat: null, history: [], cursor: 0, threshold: null, thresholdMethod: "manual",
    sceneKey: null, lastThresholdMs: null, tool: "navigate", shown: 0, // scenes shown so far (tests wait on it)
    heatVolume: null, compared: null, compareVolume: null, comparisons: 0, // comparisons shown (tests wait on it)
    // The compare view: a second method's map and thresholded mask beside the first, linked to it.
    second: null, secondSpec: null, secondHeat: null, secondThreshold: null, secondThresholdMethod: "manual",
    seconds: 0, // second panes shown (tests wait on it)
    showing: Promise.resolve(), upcoming: null, prefetched: 0, // previews loaded (tests wait on it)
  };

  function $(selector) { return viewer.root.querySelector(selector); }

  // A heatmap's colour map with its low end transparent: the lowest scores take the colour maps' darkest
  // colours, which at any opacity dim the whole image. NiiVue draws an overlay voxel either opaque or
  // not at all (its alpha is a step), so the lowest quarter of the range is left out rather than faded in.
  const TRANSPARENT_BELOW = 64; // of the colour map's 0..255 index

  function channelAt(lut, channel, index) {
    const upper = lut.I.findIndex((i) => i >= index);
    if (upper <= 0) return lut[channel][Math.max(upper, 0)];
    const [i0, i1] = [lut.I[upper - 1], lut.I[upper]];
    const [v0, v1] = [lut[channel][upper - 1], lut[channel][upper]];
    return Math.round(v0 + ((v1 - v0) * (index - i0)) / (i1 - i0));
  }

  function faded(name) {
    const key = `${name}-low-transparent`;
    if (viewer.nv.colormaps().includes(key)) return key;
    const lut = viewer.nv.colormapFromKey(name);
    const cut = TRANSPARENT_BELOW;
    const above = lut.I.map((i, n) => n).filter((n) => lut.I[n] > cut);
    const points = (channel) => [
      channelAt(lut, channel, 0), channelAt(lut, channel, cut - 1), channelAt(lut, channel, cut),
      ...above.map((n) => lut[channel][n]),
    ];
    viewer.nv.addColormap(key, {
      R: points("R"), G: points("G"), B: points("B"), A: [0, 0, 255, ...above.map(() => 255)],
      I: [0, cut - 1, cut, ...above.map((n) => lut.I[n])],
    });
    return key;
  }

  function newViewer(canvas, withColorbar, emptyText) {
    const nv = new niivue.Niivue({
      backColor: [0.08, 0.08, 0.1, 1], isColorbar: withColorbar, isOrientationTextVisible: false,
      dragAndDropEnabled: false, show3Dcrosshair: false, crosshairColor: [0.2, 0.8, 1, 0.5],
      crosshairWidth: 0, logLevel: "error", isNearestInterpolation: true, loadingText: emptyText,
    });
    // Left button: crosshair (or the pen while drawing); right: window/level; middle or Ctrl+left: pan.
    // NiiVue's constructor drops options whose default is undefined, this one among them, so it is set here.
    nv.setMouseEventConfig({
      leftButton: { primary: niivue.DRAG_MODE.crosshair, withCtrl: niivue.DRAG_MODE.pan },
      rightButton: niivue.DRAG_MODE.windowing, centerButton: niivue.DRAG_MODE.pan,
    });
    nv.attachToCanvas(canvas);
    nv.setSliceType(nv.sliceTypeAxial);
    return nv;
  }

  // --- bit packing, shared with app/viewer.py (numpy packbits, most significant bit first) ---------

  function pack(bitmap) {
    const bytes = new Uint8Array(Math.ceil(bitmap.length / 8));
    for (let i = 0; i < bitmap.length; i++) {
      if (bitmap[i]) bytes[i >> 3] |= 0x80 >> (i & 7);
    }
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }

  function unpack(base64, length) {
    const text = atob(base64);
    const bitmap = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      if (text.charCodeAt(i >> 3) & (0x80 >> (i & 7))) bitmap[i] = MASK;
    }
    return bitmap;
  }

  function count(bitmap) {
    let n = 0;
    for (let i = 0; i < bitmap.length; i++) if (bitmap[i]) n++;
    return n;
  }

  // --- the mask and its history ------------------------------------------------------------------

  function bitmap() { return viewer.nv.drawBitmap; }

  function setBitmap(values) {
    bitmap().set(values);
    viewer.nv.refreshDrawing(true);
  }

  function resetHistory() {
    viewer.history = [bitmap().slice()];
    viewer.cursor = 0;
    showEditState();
  }

  function edited() { return viewer.cursor > 0; }

  function recordStroke() {
    if (!viewer.scene || !bitmap()) return;
    const now = bitmap();
    const last = viewer.history[viewer.cursor];
    if (last && last.length === now.length && last.every((v, i) => v === now[i])) return;
    viewer.history = viewer.history.slice(0, viewer.cursor + 1);
    viewer.history.push(now.slice());
    if (viewer.history.length > UNDO_LIMIT) viewer.history.shift();
    viewer.cursor = viewer.history.length - 1;
    showEditState();
  }

  function undo() {
    if (viewer.cursor === 0) return;
    viewer.cursor -= 1;
    setBitmap(viewer.history[viewer.cursor]);
    showEditState();
  }

  function redo() {
    if (viewer.cursor >= viewer.history.length - 1) return;
    viewer.cursor += 1;
    setBitmap(viewer.history[viewer.cursor]);
    showEditState();
  }

  function showEditState() {
    const n = bitmap() ? count(bitmap()) : 0;
    const spacing = viewer.scene && viewer.scene.spacing;
    let text = `Mask: ${n} ${viewer.scene && viewer.scene.dims[2] > 1 ? "voxels" : "px"}`;
    if (spacing) {
      const area = n * spacing[0] * spacing[1];
      text += viewer.scene.dims[2] > 1 ? ` = ${(area * spacing[2]).toFixed(1)} mm³` : ` = ${area.toFixed(1)} mm²`;
    }
    if (edited()) text += ` · ${viewer.cursor} edit${viewer.cursor > 1 ? "s" : ""} since the threshold`;
    $(".as-area").textContent = text;
    showComparison();
    $(".as-undo").disabled = viewer.cursor === 0;
    $(".as-redo").disabled = viewer.cursor >= viewer.history.length - 1;
  }

  // --- comparing with a saved version ---------------------------------------------------------------

  // Overlap of the mask on screen with the compared version, kept current as the reader edits.
  function showComparison() {
    const box = $(".as-compare");
    const other = viewer.compared;
    box.hidden = !other;
    if (!other || !bitmap()) return;
    const now = bitmap();
    let both = 0, onlyNow = 0, onlyThen = 0;
    for (let i = 0; i < now.length; i++) {
      if (now[i] && other.mask[i]) both++;
      else if (now[i]) onlyNow++;
      else if (other.mask[i]) onlyThen++;
    }
    const total = 2 * both + onlyNow + onlyThen;
    const dice = total ? (2 * both) / total : 1;
    const unit = viewer.scene.dims[2] > 1 ? "voxels" : "px";
    box.textContent = `Magenta outline: saved version ${other.version}. Dice with the mask on screen ` +
      `${dice.toFixed(3)}; the mask on screen adds ${onlyNow} ${unit} and drops ${onlyThen}.`;
  }

  async function compare(spec) {
    const nv = viewer.nv;
    if (viewer.compareVolume) nv.removeVolume(viewer.compareVolume);
    viewer.compareVolume = null;
    viewer.compared = null;
    // A comparison made for another scene (the reader has moved on) is not drawn.
    if (spec && viewer.scene && spec.token === viewer.scene.token) {
      await nv.addVolumeFromUrl({ url: spec.url, name: `version-${spec.version}.nii.gz`, colormap: COMPARE_LUT,
        cal_min: 0.5, cal_max: 1, opacity: 1, colorbarVisible: false });
      viewer.compareVolume = nv.volumes[nv.volumes.length - 1];
      viewer.compared = { version: spec.version, mask: unpack(spec.mask, bitmap().length) };
    }
    showComparison();
    nv.drawScene();
    viewer.comparisons += 1;
  }

  // --- threshold ------------------------------------------------------------------------------------

  function thresholdMask(value, heat = viewer.heat) {
    const cut = Math.fround(value); // the map is float32: compare as numpy does
    const out = new Uint8Array(heat.length);
    for (let i = 0; i < heat.length; i++) if (heat[i] >= cut) out[i] = MASK;
    return out;
  }

  function verdictText(value) {
    const t = viewer.scene.threshold;
    if (!t.image_level) return "";
    const flagged = t.image_score >= value;
    const normals = t.normal_scores || [];
    const percent = (count) => Math.round((100 * count) / normals.length);
    const below = percent(normals.filter((s) => s < t.image_score).length);
    const alarms = percent(normals.filter((s) => s >= value).length);
    return `Image score ${t.image_score.toPrecision(4)} ${flagged ? "≥" : "<"} threshold ${Number(value).toPrecision(4)}:` +
      ` this image is ${flagged ? "FLAGGED" : "not flagged"} (${viewer.thresholdMethod}).` +
      (normals.length ? ` It scores higher than ${below}% of the ${normals.length} normal validation images;` +
        ` this threshold would flag ${alarms}% of them (false alarms).` : "") +
      " This method makes no map: the mask is what you draw.";
  }

  function applyThreshold(value, method) {
    const started = performance.now();
    const t = viewer.scene.threshold;
    if (viewer.heat && edited() &&
        !window.confirm("Moving the threshold replaces the mask with the thresholded map and discards your edits. Continue?")) {
      showThreshold();
      return false;
    }
    viewer.threshold = value;
    viewer.thresholdMethod = method;
    if (viewer.heat) {
      setBitmap(thresholdMask(value));
      resetHistory();
    }
    showThreshold();
    $(".as-verdict").textContent = t.image_level ? verdictText(value) : "";
    requestAnimationFrame(() => { viewer.lastThresholdMs = performance.now() - started; });
    return true;
  }

  // A typed threshold: an empty or invalid entry keeps the last value, one outside the map's range is
  // clamped to it (an image-level method's cut-off may be any number), and the page says which.
  function typedThreshold(input, t, current) {
    const text = input.value.trim();
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) {
      return { value: null, note: `Not a number: the threshold stays at ${Number(current).toPrecision(4)}.` };
    }
    if (t.image_level || (value >= t.min && value <= t.max)) return { value, note: "" };
    const clamped = Math.min(t.max, Math.max(t.min, value));
    return {
      value: clamped,
      note: `${value} is outside this map's range (${t.min.toPrecision(4)} to ${t.max.toPrecision(4)}): ` +
        `set to ${clamped.toPrecision(4)}.`,
    };
  }

  function typeThreshold(pane, t, current, apply, show) {
    const typed = typedThreshold($(`.as${pane}-threshold-number`), t, current);
    $(`.as${pane}-threshold-note`).textContent = typed.note;
    if (typed.value === null) show();
    else apply(typed.value, "manual");
  }

  function showThreshold() {
    $(".as-threshold").value = viewer.threshold;
    $(".as-threshold-number").value = Number(viewer.threshold).toPrecision(6);
    $(".as-threshold-method").textContent = viewer.thresholdMethod;
  }

  function setupThreshold(t, pane = "", apply = applyThreshold) {
    const slider = $(`.as${pane}-threshold`);
    slider.min = t.min; slider.max = t.max; slider.step = (t.max - t.min) / 1000 || 1e-6;
    const presets = $(`.as${pane}-presets`);
    presets.replaceChildren();
    for (const [name, value] of Object.entries(t.presets)) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = name.replace("_", " ");
      button.title = `${name}: ${value}`;
      button.dataset.preset = name;
      button.addEventListener("click", () => apply(value, name));
      presets.appendChild(button);
    }
  }

  // --- loading a scene ------------------------------------------------------------------------------

  function volumeOptions(spec, name, colormap, extra) {
    const options = { url: spec.url, name, colormap, ...extra };
    if (spec.window) { options.cal_min = spec.window[0]; options.cal_max = spec.window[1]; }
    return options;
  }

  async function clear(nv) {
    while (nv.volumes.length) nv.removeVolume(nv.volumes[nv.volumes.length - 1]);
    nv.drawScene();
  }

  // Scenes are shown one after another: a tuning session's next case may be put on screen from what was
  // loaded ahead while the server's own scene of it is on its way.
  function show(scene, loaded = null) {
    viewer.showing = viewer.showing.then(() => render(scene, loaded));
    return viewer.showing;
  }

  async function render(scene, loaded) {
    const key = (scene && (scene.token || `preview:${scene.preview}`)) || "";
    if (key === viewer.sceneKey) return; // the same scene again (an event that changed nothing)
    if (scene && scene.token && viewer.scene && viewer.scene.preview && scene.content === viewer.scene.content &&
        !scene.second) {
      adopt(scene);
      return;
    }
    viewer.sceneKey = key;
    // The new case's volumes load while the previous one is still on screen.
    const volumes = scene && scene.image ? loaded || await loadScene(scene) : null;
    viewer.scene = null;
    viewer.heat = null;
    viewer.heatVolume = null;
    viewer.compareVolume = null;
    viewer.compared = null;
    viewer.history = [];
    viewer.cursor = 0;
    $(".as-title").textContent = scene && scene.title ? scene.title : "No image open";
    $(".as-verdict").textContent = "";
    $(".as-area").textContent = "";
    $(".as-location").textContent = ""; // no reading of the previous case may stand beside this one
    $(".as-controls").hidden = true;
    viewer.nv.broadcastTo([], { "2d": true, "3d": true });
    for (const nv of [viewer.nv, viewer.restoration, viewer.uncertainty, viewer.second]) {
      if (nv.drawBitmap) nv.closeDrawing();
      await clear(nv);
    }
    $(".as-side").hidden = true;
    hideSecond();
    if (!scene || !scene.image) { viewer.shown += 1; return; }

    const nv = viewer.nv;
    for (const image of volumes.main) nv.addVolume(image);
    if (scene.heatmap) {
      viewer.heatVolume = nv.volumes[1];
      viewer.heat = viewer.heatVolume.img;
    }
    nv.setDrawColormap(MASK_LUT);
    nv.setDrawOpacity(0.2);
    nv.drawRimOpacity = 1.0; // a solid outline over a faint fill keeps the heatmap readable
    nv.createEmptyDrawing();
    viewer.scene = scene;
    nv.scene.crosshairPos = [0.5, 0.5, scene.dims[2] > 1 ? (Math.floor(scene.dims[2] / 2) + 0.5) / scene.dims[2] : 0.5];
    nv.scene.pan2Dxyzmm = [0, 0, 0, 1];

    $(".as-restoration-caption").textContent = scene.restoration ? scene.restoration.caption : "";
    showSide(viewer.restoration, volumes.restoration, ".as-restoration-box");
    showSide(viewer.uncertainty, volumes.uncertainty, ".as-uncertainty-box");

    broadcast();
    setupWindowPresets(scene);
    $(".as-controls").hidden = false;
    $(".as-threshold-row").hidden = !scene.threshold;
    viewer.root.querySelectorAll(".as-heatmap-row").forEach((row) => { row.hidden = !scene.heatmap; });
    updateBrush();
    startMask(scene);
    setTool("navigate"); // a tool left active on the previous case would draw on this one at the first click
    $(".as-location").textContent = scene.dims[2] > 1 ? `Slice ${currentSlice() + 1} / ${scene.dims[2]}` : "";
    nv.drawScene();
    if (scene.second) await showSecond(scene.second);
    viewer.shown += 1;
  }

  // The threshold and mask a scene starts with. Nothing of the previous case's threshold survives: a scene
  // without one (a reopened annotation with no map) sends none, and the server records the saved version's.
  function startMask(scene) {
    viewer.threshold = null;
    viewer.thresholdMethod = "manual";
    $(".as-threshold-note").textContent = "";
    if (scene.threshold) {
      setupThreshold(scene.threshold);
      viewer.threshold = scene.threshold.value;
      viewer.thresholdMethod = scene.threshold.method;
    }
    if (scene.mask) {
      setBitmap(unpack(scene.mask, bitmap().length));
      resetHistory();
      showThreshold();
      $(".as-verdict").textContent = scene.threshold && scene.threshold.image_level ? verdictText(viewer.threshold) : "";
    } else if (scene.threshold) {
      resetHistory();
      applyThreshold(scene.threshold.value, scene.threshold.method);
    } else {
      resetHistory();
    }
  }

  // The volumes of a scene, loaded from the server: the image and its map for the main view, and the side
  // views' restoration and uncertainty.
  async function loadScene(scene) {
    const prefix = scene.preview ? "preview-" : ""; // which volumes came from a preview (tests look)
    const load = (spec, name, colormap, extra) =>
      niivue.NVImage.loadFromUrl({ ...volumeOptions(spec, prefix + name, colormap, extra), trustCalMinMax: true });
    const main = [load(scene.image, "image.nii.gz", "gray", { colorbarVisible: false })];
    if (scene.heatmap) {
      main.push(load(scene.heatmap, "heatmap.nii.gz", faded(scene.heatmap.colormap),
        { opacity: Number($(".as-opacity").value), colorbarVisible: true }));
    }
    const side = (spec, colormap) => (spec ? load(spec, "side.nii.gz", spec.rgb ? "gray" : colormap, {}) : null);
    const [images, restoration, uncertainty] = await Promise.all([
      Promise.all(main), side(scene.restoration, "gray"), side(scene.uncertainty, "viridis"),
    ]);
    return { main: images, restoration, uncertainty };
  }

  // --- the next case of a tuning session, loaded while the reader works on this one ----------------

  // The server's preview of the next case (nothing of it is stored) is loaded at once; Next shows it
  // without waiting for the server, whose own scene of the case then only brings its token and title.
  async function prefetch(preview) {
    viewer.upcoming = null;
    if (!preview || !viewer.scene || preview.after !== viewer.scene.token) return;
    viewer.upcoming = { scene: preview, loaded: await loadScene(preview) };
    viewer.prefetched += 1;
  }

  function advance() {
    const upcoming = viewer.upcoming;
    viewer.upcoming = null;
    // Only from the case the preview was made after: a step taken meanwhile has moved past it.
    if (!upcoming || !viewer.scene || upcoming.scene.after !== viewer.scene.token) return;
    show(upcoming.scene, upcoming.loaded);
  }

  // The server's scene of the case a preview put on screen: the same volumes (`content`), so they stay;
  // the scene's token, title and threshold replace the preview's, and its mask unless the reader has
  // already begun correcting.
  function adopt(scene) {
    viewer.sceneKey = scene.token;
    viewer.scene = scene;
    $(".as-title").textContent = scene.title;
    if (!edited()) startMask(scene);
    else if (scene.threshold) setupThreshold(scene.threshold);
    viewer.shown += 1;
  }

  // The other views follow the main view's slice, zoom and pan (only views holding an image:
  // NiiVue cannot describe a location in an empty one).
  function linked() {
    return [viewer.restoration, viewer.uncertainty, viewer.second].filter((view) => view.volumes.length);
  }

  function broadcast() {
    viewer.nv.broadcastTo(linked(), { "2d": true, "3d": true });
  }

  // --- a second method beside the first (the compare view) ---------------------------------------

  function hideSecond() {
    viewer.secondSpec = null;
    viewer.secondHeat = null;
    $(".as-second-box").hidden = true;
    $(".as-second-row").hidden = true;
  }

  async function showSecond(spec) {
    const nv = viewer.second;
    if (nv.drawBitmap) nv.closeDrawing();
    await clear(nv);
    hideSecond();
    // A pane made for another scene (the reader has moved on) is not shown.
    if (spec && spec.heatmap && viewer.scene && spec.token === viewer.scene.token) {
      $(".as-second-box").hidden = false;
      $(".as-second-row").hidden = false;
      nv.resizeListener();
      await nv.loadVolumes([
        volumeOptions(viewer.scene.image, "image.nii.gz", "gray", { colorbarVisible: false }),
        volumeOptions(spec.heatmap, "second-heatmap.nii.gz", faded(spec.heatmap.colormap),
          { opacity: Number($(".as-opacity").value), colorbarVisible: true }),
      ]);
      viewer.secondHeat = nv.volumes[1].img;
      nv.setDrawColormap(MASK_LUT);
      nv.setDrawOpacity(0.2);
      nv.drawRimOpacity = 1.0;
      nv.createEmptyDrawing();
      viewer.secondSpec = spec;
      $(".as-second-title").textContent = `${spec.label} (run ${spec.run_id})`;
      $(".as-second-label").textContent = spec.label;
      setupThreshold(spec.threshold, "-second", applySecondThreshold);
      applySecondThreshold(spec.threshold.value, spec.threshold.method);
    }
    broadcast();
    linkSides();
    viewer.seconds += 1;
  }

  // The second pane's mask is its map at its own threshold; corrections are made in the main pane
  // (swapping the methods brings the second one there).
  function applySecondThreshold(value, method) {
    if (!viewer.secondHeat) return;
    viewer.secondThreshold = value;
    viewer.secondThresholdMethod = method;
    viewer.second.drawBitmap.set(thresholdMask(value, viewer.secondHeat));
    viewer.second.refreshDrawing(true);
    $(".as-second-threshold").value = value;
    $(".as-second-threshold-number").value = Number(value).toPrecision(6);
    $(".as-second-threshold-method").textContent = method;
  }

  // Both panes' thresholds, for swapping which method is corrected and saved ("" when the reader keeps
  // the edits on screen instead).
  function panes() {
    if (!viewer.scene || !viewer.secondSpec) return "";
    if (edited() && !window.confirm("Switching methods replaces the mask with the other method's thresholded map and discards your edits. Continue?")) {
      return "";
    }
    return JSON.stringify({
      token: viewer.scene.token,
      first: { threshold: viewer.threshold, method: viewer.thresholdMethod },
      second: { threshold: viewer.secondThreshold, method: viewer.secondThresholdMethod },
    });
  }

  // Slice, zoom, pan and window moved in the second pane move the main one (and so every other view).
  // NiiVue's broadcast from the main view reports a location change in the second one: following it
  // again from there would recurse, so a change already being followed is not followed twice.
  let following = false;

  function followSecond() {
    const [main, second] = [viewer.nv, viewer.second];
    if (following || !viewer.secondSpec || !second.volumes.length) return;
    following = true;
    try {
      moveMainToSecond(main, second);
    } finally {
      following = false;
    }
  }

  function moveMainToSecond(main, second) {
    main.scene.crosshairPos = second.scene.crosshairPos.slice();
    main.scene.pan2Dxyzmm = second.scene.pan2Dxyzmm.slice();
    copyWindow(second, main);
    main.drawScene();
    linkSides();
  }

  function showSide(nv, image, box) {
    if (!image) { $(box).hidden = true; return; }
    $(".as-side").hidden = false;
    $(box).hidden = false;
    nv.resizeListener();
    nv.addVolume(image);
    nv.scene.crosshairPos = viewer.nv.scene.crosshairPos.slice();
    nv.scene.pan2Dxyzmm = viewer.nv.scene.pan2Dxyzmm.slice();
    nv.drawScene();
  }

  function setupWindowPresets(scene) {
    const select = $(".as-window");
    select.replaceChildren();
    for (const [name, range] of scene.window_presets) {
      const option = document.createElement("option");
      option.textContent = name;
      option.value = JSON.stringify(range);
      select.appendChild(option);
    }
    $(".as-window-row").hidden = scene.image.rgb;
  }

  function setWindow(range) {
    const image = viewer.nv.volumes[0];
    image.cal_min = range[0];
    image.cal_max = range[1];
    viewer.nv.updateGLVolume();
    linkSides();
  }

  // --- tools ---------------------------------------------------------------------------------------

  function updateBrush() {
    if (!viewer.scene) return;
    const size = Number($(".as-brush-size").value);
    const spacing = viewer.scene.spacing;
    $(".as-brush-unit").textContent = spacing ? "mm" : "px";
    // NiiVue's pen size is in voxels; with a known spacing the reader sets it in mm.
    viewer.nv.opts.penSize = Math.max(1, Math.round(spacing ? size / Math.min(spacing[0], spacing[1]) : size));
  }

  function setTool(tool) {
    viewer.tool = tool;
    const nv = viewer.nv;
    nv.setDrawingEnabled(tool !== "navigate");
    if (tool === "brush") nv.setPenValue(MASK, false);
    if (tool === "fill") nv.setPenValue(MASK, true);
    if (tool === "eraser") nv.setPenValue(0, false);
    viewer.root.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("as-active", b.dataset.tool === tool));
  }

  // NiiVue's own broadcast runs only while the main canvas has focus, so the side views are also
  // brought to the main view's slice, zoom and pan after every change made here.
  function linkSides() {
    const main = viewer.nv;
    for (const side of linked()) {
      side.scene.crosshairPos = main.scene.crosshairPos.slice();
      side.scene.pan2Dxyzmm = main.scene.pan2Dxyzmm.slice();
      side.drawScene();
    }
    if (viewer.second.volumes.length && main.volumes.length) copyWindow(main, viewer.second);
  }

  // The image's window (volume 0) of one pane onto the other, redrawn only when it changed.
  function copyWindow(from, to) {
    const [source, target] = [from.volumes[0], to.volumes[0]];
    if (source.cal_min === target.cal_min && source.cal_max === target.cal_max) return;
    target.cal_min = source.cal_min;
    target.cal_max = source.cal_max;
    to.updateGLVolume();
  }

  function zoom(factor) {
    const nv = viewer.nv;
    const pan = nv.scene.pan2Dxyzmm;
    nv.scene.pan2Dxyzmm = factor ? [pan[0], pan[1], pan[2], Math.min(40, Math.max(0.2, pan[3] * factor))] : [0, 0, 0, 1];
    nv.drawScene();
    linkSides();
  }

  function moveSlice(step) {
    if (!viewer.scene || viewer.scene.dims[2] < 2) return;
    viewer.nv.moveCrosshairInVox(0, 0, step);
    linkSides();
  }

  function currentSlice() {
    const nv = viewer.nv;
    if (!viewer.scene) return 0;
    return Math.min(viewer.scene.dims[2] - 1, Math.max(0, Math.floor(nv.scene.crosshairPos[2] * viewer.scene.dims[2])));
  }

  function onLocation(data) {
    if (!viewer.scene) return;
    const z = currentSlice();
    const values = (data.values || []).map((v) => v.value).filter((v) => v !== undefined);
    let text = viewer.scene.dims[2] > 1 ? `Slice ${z + 1} / ${viewer.scene.dims[2]}` : "";
    if (data.vox) text += `  x ${data.vox[0]}, y ${viewer.scene.dims[1] - 1 - data.vox[1]}`;
    if (viewer.heat && values.length > 1) text += `  score ${Number(values[1]).toPrecision(4)}`;
    $(".as-location").textContent = text;
    linkSides();
  }

  // Where voxel (column x, row y) of the slice on screen is, in page coordinates.
  function screenPoint(x, y) {
    const [W, H, S] = viewer.scene.dims;
    const z = (currentSlice() + 0.5) / S;
    const position = viewer.nv.frac2canvasPos([(x + 0.5) / W, (H - 1 - y + 0.5) / H, z]);
    const rect = viewer.nv.canvas.getBoundingClientRect();
    const dpr = viewer.nv.uiData.dpr || window.devicePixelRatio || 1;
    return [rect.left + position[0] / dpr, rect.top + position[1] / dpr];
  }

  // --- what Save sends -----------------------------------------------------------------------------

  function payload() {
    if (!viewer.scene || !bitmap()) return "";
    const mask = bitmap();
    return JSON.stringify({
      token: viewer.scene.token, opening: Boolean(viewer.scene.preview), dims: viewer.scene.dims, mask: pack(mask),
      voxels: count(mask),
      threshold: viewer.threshold, threshold_method: viewer.thresholdMethod, edited: edited(), slice: currentSlice(),
    });
  }

  // --- wiring --------------------------------------------------------------------------------------

  function wire() {
    viewer.root.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
    $(".as-undo").addEventListener("click", undo);
    $(".as-redo").addEventListener("click", redo);
    $(".as-zoom-in").addEventListener("click", () => zoom(1.25));
    $(".as-zoom-out").addEventListener("click", () => zoom(0.8));
    $(".as-zoom-fit").addEventListener("click", () => zoom(0));
    $(".as-brush-size").addEventListener("input", updateBrush);
    $(".as-threshold").addEventListener("input", (e) => {
      $(".as-threshold-note").textContent = "";
      applyThreshold(Number(e.target.value), "manual");
    });
    $(".as-threshold-number").addEventListener("change", () =>
      typeThreshold("", viewer.scene.threshold, viewer.threshold, applyThreshold, showThreshold));
    $(".as-window").addEventListener("change", (e) => setWindow(JSON.parse(e.target.value)));
    $(".as-opacity").addEventListener("input", (e) => {
      if (viewer.heatVolume) viewer.nv.setOpacity(viewer.nv.volumes.indexOf(viewer.heatVolume), Number(e.target.value));
      if (viewer.secondHeat) viewer.second.setOpacity(1, Number(e.target.value));
    });
    $(".as-second-threshold").addEventListener("input", (e) => {
      $(".as-second-threshold-note").textContent = "";
      applySecondThreshold(Number(e.target.value), "manual");
    });
    $(".as-second-threshold-number").addEventListener("change", () =>
      typeThreshold("-second", viewer.secondSpec.threshold, viewer.secondThreshold, applySecondThreshold,
        () => applySecondThreshold(viewer.secondThreshold, viewer.secondThresholdMethod)));
    $(".as-colormap").addEventListener("change", (e) => {
      if (viewer.heatVolume) viewer.nv.setColormap(viewer.heatVolume.id, faded(e.target.value));
      if (viewer.secondHeat) viewer.second.setColormap(viewer.second.volumes[1].id, faded(e.target.value));
    });
    const main = $(".as-main");
    // A stroke ends on pointer up; NiiVue has written the bitmap by the next task.
    main.addEventListener("pointerup", () => setTimeout(() => { recordStroke(); linkSides(); }, 0));
    const secondBox = $(".as-second-box");
    secondBox.addEventListener("pointerup", () => setTimeout(followSecond, 0));
    for (const box of [main, secondBox]) {
      box.addEventListener("wheel", (e) => {
        if (!e.ctrlKey) return; // plain wheel: NiiVue scrolls slices
        e.preventDefault();
        e.stopImmediatePropagation();
        zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1);
      }, { capture: true, passive: false });
    }
    document.addEventListener("keydown", (e) => {
      if (!viewer.scene || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
      const key = e.key.toLowerCase();
      if ((e.ctrlKey || e.metaKey) && key === "z" && !e.shiftKey) { e.preventDefault(); undo(); }
      else if ((e.ctrlKey || e.metaKey) && (key === "y" || (key === "z" && e.shiftKey))) { e.preventDefault(); redo(); }
      else if (key === "arrowup" || key === "pageup") { e.preventDefault(); moveSlice(1); }
      else if (key === "arrowdown" || key === "pagedown") { e.preventDefault(); moveSlice(-1); }
    });
    viewer.nv.onLocationChange = onLocation;
    viewer.second.onLocationChange = followSecond;
    new ResizeObserver(() => [viewer.nv, viewer.restoration, viewer.uncertainty, viewer.second]
      .filter((nv) => nv.volumes.length).forEach((nv) => nv.resizeListener()))
      .observe(viewer.root);
    // The tools above the views appear with a case and change height with it (a second threshold row, a
    // verdict): the views shrink or grow to keep the image's bottom at the window's.
    new ResizeObserver(fitViews).observe($(".as-controls"));
  }

  // The image and its tools on one screen: the views reach down to the bottom of the reader's window,
  // whatever the page puts above them (a longer message, a second threshold row) and below (the status line).
  const MIN_VIEW_HEIGHT = 280;

  function fitViews() {
    const views = $(".as-views");
    const below = viewer.root.getBoundingClientRect().bottom - views.getBoundingClientRect().bottom;
    const top = views.getBoundingClientRect().top + window.scrollY;
    const height = Math.max(MIN_VIEW_HEIGHT, Math.floor(window.innerHeight - top - below - 12));
    if (Math.abs(views.offsetHeight - height) > 1) views.style.height = `${height}px`;
  }

  function mount(root) {
    viewer.root = root;
    viewer.nv = newViewer(root.querySelector(".as-main canvas"), true, "No image open");
    viewer.nv.addColormap(COMPARE_LUT, { R: [0, 255], G: [0, 0], B: [0, 255], A: [0, 255], I: [0, 255] });
    viewer.restoration = newViewer(root.querySelector(".as-restoration-box canvas"), false, "");
    viewer.uncertainty = newViewer(root.querySelector(".as-uncertainty-box canvas"), true, "");
    viewer.second = newViewer(root.querySelector(".as-second-box canvas"), true, "");
    wire();
    setTool("navigate");
    fitViews();
    window.addEventListener("resize", fitViews);
    new ResizeObserver(fitViews).observe(document.body);
  }

  window.anomascope = {
    mount, show, compare, showSecond, prefetch, advance, panes, payload, undo, redo, setTool, applyThreshold, applySecondThreshold,
    currentSlice, moveSlice, zoom, setWindow, screenPoint, viewer, pack, unpack,
    mask: () => (bitmap() ? Array.from(bitmap(), (v) => (v ? 1 : 0)) : []),
    secondMask: () => (viewer.second.drawBitmap ? Array.from(viewer.second.drawBitmap, (v) => (v ? 1 : 0)) : []),
  };
})();
