"""Running the method picked, and picking another."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from anomascope.app.page.reader import actor
from anomascope.app.page.screen import Screen, method_text, shown
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.session import ReviewSession


def on_run(app: ReviewApp, login: bool, screen: Screen, state: ReviewSession, choice, who, request: gr.Request):
    try:
        ran = app.run(state, choice, actor(login, who, request))
    except Exception as exc:
        return {screen.message: friendly(exc)}
    return shown(app, screen, ran, state, f"**{choice}** ran; move the threshold, correct the mask and save.")


def on_method(app: ReviewApp, screen: Screen, method_info: gr.Markdown, state: ReviewSession, choice):
    info = method_text(app, choice)
    if state.run is None or state.run.label == choice:
        return {method_info: info}
    # The old result must not stay on screen under the new method's name.
    cleared = replace(state, run=None, second=None, token=None, warnings=[])
    return {
        **shown(app, screen, cleared, state, f"Press **Run** to score this image with {choice}."),
        method_info: info,
    }
