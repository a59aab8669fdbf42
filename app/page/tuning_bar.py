"""A threshold-tuning session's bar: starting a session, stepping through its cases, and the next case
loaded ahead."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from anomascope.app.page.opening import collapsed
from anomascope.app.page.reader import actor
from anomascope.app.page.screen import Screen, shown
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly, markdown_text
from anomascope.app.review.session import ReviewSession
from anomascope.app.review.tuning_session import CaseNotOpened, TuningService
from anomascope.app.review.worklists import TuningView


@dataclass(frozen=True)
class TuningBar:
    """A reader's place in a tuning session: the `TuningView` (`tuning`), its progress line, and the bar
    that holds that line and the Previous and Next buttons."""

    tuning: gr.State
    progress: gr.Markdown
    bar: gr.Column


def unopened(message: gr.Markdown, bar: TuningBar, exc: CaseNotOpened):
    """The session moves on to the case that failed, and says why; Next goes past it."""
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    reason = friendly(cause).removeprefix("⚠️ ")
    progress = markdown_text(exc.view.progress)
    said = f"⚠️ Tuning session: {progress} could not be opened: {reason.rstrip('.')}."
    said += " The case on screen is the one before; Next goes on to the next case."
    return {message: said, bar.tuning: exc.view, bar.progress: progress}


def on_tuning_start(
    app: ReviewApp,
    service: TuningService,
    login: bool,
    screen: Screen,
    open_panel: gr.Sidebar,
    bar: TuningBar,
    source,
    choice,
    who,
    previous: ReviewSession,
    request: gr.Request,
):
    try:
        view = service.start(source or "", choice, actor(login, who, request))
        view, state = service.open(view, 0, actor(login, who, request))
    except CaseNotOpened as exc:
        return {**unopened(screen.message, bar, exc), bar.bar: gr.Column(visible=True)}
    except Exception as exc:
        return {screen.message: friendly(exc)}
    progress = markdown_text(view.progress)
    said = f"Tuning session started: {progress}. Settle the threshold, correct the mask, save, then Next."
    return {
        **collapsed(open_panel, shown(app, screen, state, previous, said)),
        bar.tuning: view,
        bar.progress: progress,
        bar.bar: gr.Column(visible=True),
    }


def on_step(
    app: ReviewApp,
    service: TuningService,
    login: bool,
    screen: Screen,
    bar: TuningBar,
    delta: int,
    view: TuningView | None,
    who,
    previous: ReviewSession,
    request: gr.Request,
):
    if view is None:
        return {screen.message: "Start a tuning session first."}
    try:
        view, state = service.step(view, delta, actor(login, who, request))
    except CaseNotOpened as exc:
        return unopened(screen.message, bar, exc)
    except Exception as exc:
        return {screen.message: friendly(exc)}
    return {
        **shown(app, screen, state, previous, f"Tuning session: {markdown_text(view.progress)}."),
        bar.tuning: view,
        bar.progress: markdown_text(view.progress),
    }


def on_preview(service: TuningService, view: TuningView | None, state: ReviewSession) -> str:
    """The next case, ready for the viewer before the reader steps on (nothing of it is stored)."""
    preview = service.preview(view) if view is not None and state.token else None
    return json.dumps({**preview, "after": state.token}) if preview else ""
