"""Saving the mask on screen as an annotation (within a tuning session or not), and exporting annotations."""

from __future__ import annotations

import gradio as gr

from anomascope.app.page.reader import actor
from anomascope.app.page.screen import Screen, compare_update, versions_update
from anomascope.app.review.annotations import Submission
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.session import ReviewSession
from anomascope.app.review.tuning_session import TuningService
from anomascope.app.review.worklists import TuningView


def on_save(
    app: ReviewApp,
    service: TuningService,
    login: bool,
    screen: Screen,
    state: ReviewSession,
    sent,
    who,
    lab,
    text,
    acknowledged,
    view: TuningView | None,
    request: gr.Request,
):
    try:
        submission = Submission(sent, actor(login, who, request), lab, text, acknowledged)
        if view is not None and state.case_id == view.case_id:
            state, said = service.save(view, state, submission)
        else:
            state, said = app.save(state, submission)
    except Exception as exc:
        return {screen.save_status: friendly(exc)}
    return {
        screen.session: state,
        screen.save_status: said,
        screen.message: said,
        screen.history: app.history(state),
        screen.worklist: app.worklist(),
        screen.mask_source: app.mask_source(state),
        screen.versions: versions_update(state),
        screen.compare: compare_update(state),
    }


def run_export(app: ReviewApp, download: gr.File, message: gr.Markdown, fmt: str):
    try:
        return {download: app.export_file(fmt), message: f"Exported annotations as {fmt.upper()}."}
    except Exception as exc:
        return {message: friendly(exc)}
