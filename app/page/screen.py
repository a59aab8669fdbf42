"""What a case on screen fills in: the components every opened case, run or version refills (`Screen`), and
what the page says about the method picked."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import gradio as gr

from anomascope.app.bundles import Catalogue, calibration_summary
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.session import ReviewSession

NO_COMPARISON = 0  # the comparison menu's "none" (saved versions count from 1)


@dataclass(frozen=True)
class Screen:
    """The components `shown` fills, in the order events list them as outputs."""

    session: gr.State
    scene: gr.Textbox
    message: gr.Markdown
    score: gr.Markdown
    warning: gr.Markdown
    acknowledge: gr.Checkbox
    mask_source: gr.Markdown
    versions: gr.Dropdown
    compare: gr.Dropdown
    comparison: gr.Textbox
    history: gr.Dataframe
    worklist: gr.Dataframe
    save_status: gr.Markdown

    def outputs(self) -> list:
        return [getattr(self, field.name) for field in fields(self)]


def shown(app: ReviewApp, screen: Screen, state: ReviewSession, previous: ReviewSession | None, text: str) -> dict:
    """Every view of the page for `state`, replacing whatever the previous case left."""
    state, described = app.scene(state, previous.token if previous else None)
    run_view = state.run
    return {
        screen.session: state,
        screen.scene: json.dumps(described),
        screen.message: text,
        screen.score: app.score_text(state) if run_view else "",
        screen.warning: gr.update(value="\n".join(f"⚠️ {w}" for w in state.warnings), visible=bool(state.warnings)),
        screen.acknowledge: gr.update(value=False, visible=bool(state.warnings)),
        screen.mask_source: app.mask_source(state),
        screen.versions: versions_update(state),
        screen.compare: compare_update(state, reset=True),
        screen.comparison: "",
        screen.history: app.history(state),
        screen.worklist: app.worklist(),
        screen.save_status: "",
    }


def failed(app: ReviewApp, screen: Screen, previous: ReviewSession, exc: Exception) -> dict:
    return shown(app, screen, ReviewSession(), previous, friendly(exc))


def versions_update(state: ReviewSession) -> dict:
    """The saved-versions menu for the session: every version of its lineage, the one on screen picked."""
    return gr.update(
        choices=[(f"version {v.version} · annotation {v.annotation_id}", v.version) for v in state.versions],
        value=state.saved.version if state.saved else None,
        visible=bool(state.versions),
    )


def compare_update(state: ReviewSession, reset: bool = False) -> dict:
    """The comparison menu: none, or any saved version of the lineage; a save keeps what is picked."""
    choices = [("no comparison", NO_COMPARISON)] + [(f"version {v.version}", v.version) for v in state.versions]
    if reset:
        return gr.update(choices=choices, visible=bool(state.versions), value=NO_COMPARISON)
    return gr.update(choices=choices, visible=bool(state.versions))


def method_text(app: ReviewApp, choice) -> str:
    """The bundle's calibration, and where each site threshold it offers came from."""
    notes = app.site_preset_notes(choice) if choice else ""
    return _method_info(app.catalogue, choice) + (f"\n{notes}" if notes else "")


def _method_info(catalogue: Catalogue, choice) -> str:
    if not catalogue.choices:
        return "No trained bundles found: train one with `anomascope train` (see the README)."
    if choice not in catalogue.choices:
        return ""
    picked = catalogue.choices[choice]
    return calibration_summary(picked.bundle, picked.method)
