"""The PACS panel: searching studies, listing a study's series, opening one, and sending a saved annotation
back."""

from __future__ import annotations

import gradio as gr

from anomascope.app.page.opening import Opening, collapsed, opened_view
from anomascope.app.page.reader import actor
from anomascope.app.page.screen import failed
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.session import ReviewSession


def on_pacs_search(
    app: ReviewApp,
    message: gr.Markdown,
    pacs_studies: gr.Dataframe,
    pacs_series: gr.Dropdown,
    pacs_study: gr.State,
    text,
):
    try:
        rows = app.pacs_studies(text)
    except Exception as exc:
        return {message: friendly(exc)}
    said = f"{len(rows)} studies found on the PACS." if rows else "No study on the PACS matches."
    return {pacs_studies: rows, pacs_series: gr.update(choices=[], value=None), pacs_study: "", message: said}


def on_pacs_study(
    app: ReviewApp, message: gr.Markdown, pacs_study: gr.State, pacs_series: gr.Dropdown, event: gr.SelectData
):
    study_uid = str(event.row_value[-1])
    try:
        series = app.pacs_series(study_uid)
    except Exception as exc:
        return {message: friendly(exc)}
    first = series[0][1] if series else None
    return {pacs_study: study_uid, pacs_series: gr.update(choices=series, value=first)}


def on_pacs_open(
    app: ReviewApp,
    login: bool,
    opening: Opening,
    study_uid,
    series_uid,
    who,
    previous: ReviewSession,
    choice,
    request: gr.Request,
):
    try:
        state = app.open_pacs_series(study_uid, series_uid, actor(login, who, request))
        return collapsed(opening.open_panel, opened_view(app, opening, state, previous, choice))
    except Exception as exc:
        return failed(app, opening.screen, previous, exc)


def on_pacs_send(
    app: ReviewApp,
    login: bool,
    save_status: gr.Markdown,
    message: gr.Markdown,
    state: ReviewSession,
    who,
    request: gr.Request,
):
    try:
        said = app.send_to_pacs(state, actor(login, who, request))
    except Exception as exc:  # the annotation stays saved here; the reader may send it again
        said = friendly(exc)
    return {save_status: said, message: said}
