"""The saved versions of a case's annotation: showing one, and comparing the mask on screen with one."""

from __future__ import annotations

import json

import gradio as gr

from anomascope.app.page.screen import NO_COMPARISON, Screen, shown
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.session import ReviewSession


def on_version(app: ReviewApp, screen: Screen, state: ReviewSession, version):
    if version is None or state.saved is None or version == state.saved.version:
        return {screen.message: gr.update()}
    try:
        picked = app.show_version(state, int(version))
    except Exception as exc:
        return {screen.message: friendly(exc)}
    return shown(app, screen, picked, state, f"Showing saved version {version}.")


def on_compare(app: ReviewApp, message: gr.Markdown, comparison: gr.Textbox, state: ReviewSession, version):
    try:
        spec = app.comparison(state, None if version in (None, NO_COMPARISON) else int(version))
    except Exception as exc:
        return {message: friendly(exc), comparison: ""}
    return {comparison: json.dumps(spec) if spec else ""}
