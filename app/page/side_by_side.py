"""Two methods side by side: running a second beside the first, swapping which one is corrected and saved,
and closing the second pane."""

from __future__ import annotations

import json

import gradio as gr

from anomascope.app.page.reader import actor
from anomascope.app.page.screen import Screen, shown
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.session import ReviewSession


def on_second_run(
    app: ReviewApp,
    login: bool,
    screen: Screen,
    second_scene: gr.Textbox,
    state: ReviewSession,
    choice,
    who,
    request: gr.Request,
):
    try:
        state, spec = app.run_second(state, choice, actor(login, who, request))
    except Exception as exc:
        return {screen.message: friendly(exc), second_scene: ""}
    return {
        screen.session: state,
        second_scene: json.dumps(spec),
        screen.message: f"**{choice}** is on the right, at the same slice, zoom, pan and window; the mask you "
        f"correct and save is {state.shown_run.label}'s (on the left) until you swap them.",
        screen.history: app.history(state),
    }


def on_swap(app: ReviewApp, screen: Screen, state: ReviewSession, sent):
    if not sent:
        return {screen.message: "Nothing swapped: compare two methods first (or keep the edits on screen)."}
    try:
        swapped = app.swap_sides(state, sent)
    except Exception as exc:
        return {screen.message: friendly(exc)}
    return shown(app, screen, swapped, state, f"Correcting **{swapped.shown_run.label}** now; saving records its run.")


def on_second_close(app: ReviewApp, session: gr.State, second_scene: gr.Textbox, state: ReviewSession):
    return {session: app.close_second(state), second_scene: ""}
