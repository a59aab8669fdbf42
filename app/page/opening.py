"""Opening a case: an upload, a folder of one DICOM series, or a row of the worklist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from anomascope.app.page.reader import actor
from anomascope.app.page.screen import Screen, failed, method_text, shown
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import markdown_text
from anomascope.app.review.session import ReviewSession
from anomascope.app.review.uploads import uploaded


@dataclass(frozen=True)
class Opening:
    """What opening a case fills: the screen, the method picked and what the page says about it, and the
    panel the case was opened from."""

    screen: Screen
    method: gr.Dropdown
    method_info: gr.Markdown
    open_panel: gr.Sidebar

    def outputs(self) -> list:
        return [*self.screen.outputs(), self.method, self.method_info, self.open_panel]


def opened(state: ReviewSession) -> str:
    case = state.opened_case
    info = case.summary()
    return (
        f"Opened **{Path(case.source).name}** (case {state.case_id}): {info['format']}, "
        f"modality {info['modality']}, shape {info['shape']}, spacing {info['spacing'] or 'unknown'} mm."
        + (f" Showing its latest saved annotation (version {state.saved.version})." if state.saved else "")
    )


def opened_view(app: ReviewApp, opening: Opening, state: ReviewSession, previous: ReviewSession, choice) -> dict:
    """The opened case, and the method trained on images nearest it unless the one picked is as near."""
    catalogue = app.catalogue
    view = shown(app, opening.screen, state, previous, opened(state))
    picked = catalogue.choice_for(state.opened_case, choice)
    if picked is None or picked == choice:
        return view
    said = f"{view[opening.screen.message]} {markdown_text(catalogue.why_picked(picked))}; choose another above."
    return {**view, opening.screen.message: said, opening.method: picked, opening.method_info: method_text(app, picked)}


def collapsed(open_panel: gr.Sidebar, view: dict) -> dict:
    """An opened case gets the whole screen: the panel it was opened from folds away."""
    return {**view, open_panel: gr.Sidebar(open=False)}


def on_upload(
    app: ReviewApp, login: bool, opening: Opening, path, who, previous: ReviewSession, choice, request: gr.Request
):
    if not path:
        return {opening.screen.message: gr.update()}
    try:
        state = app.open_file(uploaded(path, get_upload_folder()), actor(login, who, request))
        return collapsed(opening.open_panel, opened_view(app, opening, state, previous, choice))
    except Exception as exc:  # every failure becomes a sentence on the page
        return failed(app, opening.screen, previous, exc)


def on_folder(
    app: ReviewApp, login: bool, opening: Opening, paths, who, previous: ReviewSession, choice, request: gr.Request
):
    if not paths:
        return {opening.screen.message: gr.update()}
    try:
        files = [str(uploaded(path, get_upload_folder())) for path in paths]
        state = app.open_folder(files, actor(login, who, request))
        return collapsed(opening.open_panel, opened_view(app, opening, state, previous, choice))
    except Exception as exc:
        return failed(app, opening.screen, previous, exc)


def on_worklist(app: ReviewApp, opening: Opening, previous: ReviewSession, choice, event: gr.SelectData):
    try:
        state = app.open_saved(int(event.row_value[0]))
        return collapsed(opening.open_panel, opened_view(app, opening, state, previous, choice))
    except Exception as exc:
        return failed(app, opening.screen, previous, exc)
