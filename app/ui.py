"""The Gradio review app. So far: load any supported file and view it with window/level and slices."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine.display import apply_window
from engine.io import SUPPORTED, Case, ImageReadError, load_case


def open_case(file_path: str | None):
    """Callback: a path from the upload widget to (case, message, slice slider, window, image)."""
    if not file_path:
        return None, "Upload a file to begin.", gr.update(visible=False), None, None, None, None
    try:
        case = load_case(file_path)
    except ImageReadError as exc:
        return None, f"**Cannot open this file.** {exc}", gr.update(visible=False), None, None, None, None
    centre, width = case.window
    slices = case.shape[0]
    info = case.summary()
    text = (f"**{Path(file_path).name}** — {info['format']}, modality {info['modality']}, "
            f"shape {info['shape']}, spacing {info['spacing'] or 'unknown'} mm")
    return (case, text, gr.update(maximum=max(slices - 1, 1), value=slices // 2, visible=slices > 1),
            centre, width, render_slice(case, slices // 2, centre, width), info)


def render_slice(case: Case | None, index: int, centre: float, width: float):
    if case is None:
        return None
    index = int(min(max(index or 0, 0), case.shape[0] - 1))
    return apply_window(case.pixels[index], float(centre), float(width))


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Anomascope") as demo:
        gr.Markdown("# Anomascope\nUpload an image to review. Accepted: " + SUPPORTED + ".")
        case_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Image, DICOM file or series (.zip), or NIfTI", type="filepath")
                message = gr.Markdown("Upload a file to begin.")
                slice_index = gr.Slider(0, 1, value=0, step=1, label="Slice", visible=False)
                centre = gr.Number(label="Window centre")
                width = gr.Number(label="Window width")
                details = gr.JSON(label="Case")
            with gr.Column(scale=2):
                view = gr.Image(label="Image", type="numpy", interactive=False)
        upload.change(open_case, upload, [case_state, message, slice_index, centre, width, view, details])
        for control in (slice_index, centre, width):
            control.change(render_slice, [case_state, slice_index, centre, width], view)
    return demo
