"""The Gradio review page: open a case, run a method, tune the threshold, correct, save, export."""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr


from app.bundles import calibration_summary, discover, model_dirs
from app.review import (WINDOW_PRESETS, Review, ReviewApp, ReviewError, corrected_mask, editor_value, friendly,
                        gather_series, mask_from_editor)
from engine.io import SUPPORTED
from storage import Database

COLOURMAPS = ["Inferno", "Viridis", "Jet", "Hot", "Turbo"]
SAMPLES = Path("assets") / "samples"
HISTORY_HEADERS = ["what", "id", "when", "who / method", "details", "label · note"]
WORKLIST_HEADERS = ["case", "file", "modality", "shape", "runs", "annotations", "opened"]


def data_dir() -> Path:
    return Path(os.environ.get("ANOMASCOPE_DATA_DIR", "data"))


def build_app(review_app: ReviewApp | None = None) -> gr.Blocks:
    if review_app is None:
        folder = data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        review_app = ReviewApp(Database(), discover(model_dirs()), folder / "cases")
    app = review_app
    catalogue = app.catalogue
    samples = sorted(str(p) for p in SAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".png", ".dcm", ".nii", ".gz"))

    with gr.Blocks(title="Anomascope") as demo:
        review = gr.State(Review())
        gr.Markdown("# Anomascope — anomaly map review")
        message = gr.Markdown("Open an image (" + SUPPORTED + "), pick a trained method and press **Run**.",
                              elem_id="message")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                upload = gr.File(label="Open a file (a DICOM series as .zip)", type="filepath", elem_id="upload")
                folder = gr.File(label="…or a folder holding one DICOM series", file_count="directory",
                                 type="filepath", elem_id="folder")
                if samples:
                    gr.Examples(samples, inputs=upload, label="Demo cases")
                with gr.Accordion("Worklist: cases in the database", open=False):
                    worklist = gr.Dataframe(headers=WORKLIST_HEADERS, value=app.worklist(), interactive=False)
                    with gr.Row():
                        case_to_open = gr.Number(label="Case id", precision=0, minimum=1)
                        reopen = gr.Button("Open case")
                method = gr.Dropdown(list(catalogue.choices), label="Method (trained bundle)",
                                     value=catalogue.best_choice(), elem_id="method")
                method_info = gr.Markdown(_method_info(catalogue, catalogue.best_choice()))
                run = gr.Button("Run", variant="primary", elem_id="run")
                slice_index = gr.Slider(0, 1, value=0, step=1, label="Slice", visible=False)
                with gr.Row():
                    preset = gr.Dropdown(list(WINDOW_PRESETS), value="From file", label="Window")
                    centre = gr.Number(label="Centre")
                    width = gr.Number(label="Width")
                threshold = gr.Slider(0, 1, value=0.5, step=0.001, label="Threshold", elem_id="threshold")
                threshold_method = gr.Textbox(value="manual", label="Threshold chosen by", interactive=False,
                                              elem_id="threshold-method")
                with gr.Row():
                    use_f1 = gr.Button("max F1", size="sm")
                    use_fpr = gr.Button("target FPR", size="sm")
                    use_sigma = gr.Button("k-sigma", size="sm")
                area = gr.Markdown("")
                with gr.Row():
                    opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Heatmap opacity")
                    colormap = gr.Dropdown(COLOURMAPS, value="Inferno", label="Colour map")
            with gr.Column(scale=2):
                score = gr.Markdown("", elem_id="score")
                with gr.Row():
                    overlay = gr.Image(label="Image with heatmap (green: mask outline)", interactive=False,
                                       elem_id="overlay", format="png")
                    restoration = gr.Image(label="Pseudo-healthy restoration (DIA: the dissolved image)", interactive=False, format="png")
                uncertainty = gr.Image(label="Uncertainty", interactive=False, visible=False, format="png")
                plot = gr.Plot(label="Heatmap (score under the cursor)")
                with gr.Tab("Correct and save"):
                    editor = gr.ImageEditor(label="Correct the mask (brush adds, eraser removes; moving the threshold starts again)", type="numpy",
                                            format="png", transforms=(), layers=True,
                                            brush=gr.Brush(colors=["#ff0000"], default_size=6, color_mode="fixed"),
                                            eraser=gr.Eraser(default_size=8), sources=())
                    reset_editor = gr.Button("Start again from the thresholded mask", size="sm")
                    with gr.Row():
                        reader = gr.Textbox(label="Reader", elem_id="reader")
                        label = gr.Textbox(label="Label", placeholder="e.g. lesion, jewellery, artefact")
                    note = gr.Textbox(label="Note", lines=2)
                    save = gr.Button("Save annotation", variant="primary", elem_id="save")
                with gr.Tab("History"):
                    history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False)
                with gr.Tab("Export"):
                    with gr.Row():
                        export_buttons = {fmt: gr.Button(f"Export {fmt.upper()}") for fmt in ("csv", "json", "png", "nifti")}
                    download = gr.File(label="Download", interactive=False)
                if catalogue.unavailable:
                    gr.Markdown("**Bundles that could not be loaded:**\n" +
                                "\n".join(f"- `{k}`: {v}" for k, v in catalogue.unavailable.items()))

        view_inputs = [review, slice_index, centre, width, threshold, opacity, colormap]

        def render(state: Review, index, c, w, t, alpha, cmap):
            if state.case is None:
                return None, None, gr.update(visible=False), None, ""
            index = int(index or 0)
            window = (float(c), float(w)) if c is not None and w else state.case.window
            image = app.overlay(state, index, window, float(t), float(alpha), cmap)
            if state.result is None or state.result.heatmap is None:
                return image, app.restoration(state, index), gr.update(visible=False), None, ""
            unc = app.uncertainty(state, index)
            return (image, app.restoration(state, index), gr.update(value=unc, visible=unc is not None),
                    app.heatmap_figure(state, index, cmap), app.area_text(state, app.mask(state, index, float(t))))

        view_outputs = [overlay, restoration, uncertainty, plot, area]

        def opened(state: Review):
            slices = state.case.shape[0]
            c, w = state.case.window
            info = state.case.summary()
            text = (f"Opened **{Path(state.case.source).name}** (case {state.case_id}): {info['format']}, "
                    f"modality {info['modality']}, shape {info['shape']}, spacing {info['spacing'] or 'unknown'} mm.")
            return (state, text, gr.update(maximum=max(slices - 1, 1), value=slices // 2, visible=slices > 1),
                    c, w, "From file", app.history(state), app.worklist())

        open_outputs = [review, message, slice_index, centre, width, preset, history, worklist]

        def on_upload(path, who):
            if not path:
                return (gr.update(),) * len(open_outputs)
            try:
                return opened(app.open_file(path, who or ""))
            except Exception as exc:  # every failure becomes a sentence on the page
                return (Review(), friendly(exc)) + (gr.update(),) * (len(open_outputs) - 2)

        def on_reopen(case_id):
            try:
                return opened(app.open_saved(int(case_id)))
            except Exception as exc:
                return (gr.update(), friendly(exc)) + (gr.update(),) * (len(open_outputs) - 2)

        def on_folder(paths, who):
            if not paths:
                return (gr.update(),) * len(open_outputs)
            try:
                return opened(app.open_file(gather_series(paths), who or ""))
            except Exception as exc:
                return (Review(), friendly(exc)) + (gr.update(),) * (len(open_outputs) - 2)

        upload.change(on_upload, [upload, reader], open_outputs).then(render, view_inputs, view_outputs)
        folder.change(on_folder, [folder, reader], open_outputs).then(render, view_inputs, view_outputs)
        reopen.click(on_reopen, case_to_open, open_outputs).then(render, view_inputs, view_outputs)

        def on_run(state: Review, choice, index, c, w):
            try:
                state = app.run(state, choice)
            except Exception as exc:
                return (state, friendly(exc), gr.update(), gr.update(), gr.update(), gr.update())
            value, how = app.default_threshold(state)
            low, high = app.threshold_range(state)
            index = int(index or 0)
            window = (float(c), float(w)) if c is not None and w else state.case.window
            mask = app.mask(state, index, value)
            state.editor_base = mask
            return (state, "Method ran; adjust the threshold, correct the mask and save.", app.score_text(state),
                    gr.update(minimum=low, maximum=high, value=min(max(value, low), high), step=(high - low) / 1000 or 1e-6),
                    how, editor_value(app.base_image(state, index, window), mask))

        run.click(on_run, [review, method, slice_index, centre, width],
                  [review, message, score, threshold, threshold_method, editor]).then(render, view_inputs, view_outputs)
        method.change(lambda choice: _method_info(catalogue, choice), method, method_info)

        for control in (slice_index, centre, width, opacity, colormap):
            control.change(render, view_inputs, view_outputs)
        threshold.input(lambda: "manual", None, threshold_method)
        threshold.change(render, view_inputs, view_outputs)

        def preset_threshold(name):
            def apply(state: Review):
                value = app.thresholds(state).get(name)
                if value is None:
                    return gr.update(), gr.update(), f"⚠️ this method has no calibrated {name} threshold"
                return value, name, ""
            return apply

        for button, name in ((use_f1, "max_f1"), (use_fpr, "target_fpr"), (use_sigma, "k_sigma")):
            button.click(preset_threshold(name), review, [threshold, threshold_method, message])

        def on_window(name, state: Review):
            choice = WINDOW_PRESETS.get(name)
            if state.case is None or choice is None:
                return (state.case.window if state.case else (None, None))
            if choice == "range":
                pixels = state.case.pixels
                return float(pixels.max() + pixels.min()) / 2, float(pixels.max() - pixels.min()) or 1.0
            return choice

        preset.change(on_window, [preset, review], [centre, width])

        def on_reset(state: Review, index, t, c, w):
            if state.result is None:
                return gr.update(), state
            window = (float(c), float(w)) if c is not None and w else state.case.window
            state.editor_base = app.mask(state, int(index or 0), float(t))
            return editor_value(app.base_image(state, int(index or 0), window), state.editor_base), state

        reset_editor.click(on_reset, [review, slice_index, threshold, centre, width], [editor, review])
        # Moving the threshold restarts the correction from the new thresholded mask, so the saved
        # mask always belongs to the threshold saved with it.
        threshold.change(on_reset, [review, slice_index, threshold, centre, width], [editor, review])

        def on_save(state: Review, index, t, how, edited, who, lab, text):
            try:
                if state.result is None:
                    raise ReviewError("run a method on an image before saving")
                current = app.mask(state, int(index or 0), float(t))
                mask = corrected_mask(current, state.editor_base, mask_from_editor(edited, current))
                return app.save(state, int(index or 0), mask, float(t), how, who, lab, text), app.history(state), app.worklist()
            except Exception as exc:
                return friendly(exc), gr.update(), gr.update()

        save.click(on_save, [review, slice_index, threshold, threshold_method, editor, reader, label, note],
                   [message, history, worklist])

        def exporter(fmt):
            def run_export():
                try:
                    return app.export_file(fmt), f"Exported annotations as {fmt.upper()}."
                except Exception as exc:
                    return None, friendly(exc)
            return run_export

        for fmt, button in export_buttons.items():
            button.click(exporter(fmt), None, [download, message])
    return demo


def _method_info(catalogue, choice) -> str:
    if not catalogue.choices:
        return "No trained bundles found: train one with `anomascope train` (see the README)."
    if choice not in catalogue.choices:
        return ""
    picked = catalogue.choices[choice]
    return calibration_summary(picked.bundle, picked.method)



