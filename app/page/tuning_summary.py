"""The tuning summary: a session's proposed site threshold and curves, the readers' agreement, and saving the
proposal as a site threshold."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from anomascope.app.page.reader import actor
from anomascope.app.page.screen import method_text
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.tuning_session import CaseAgreement, SessionSummary, TuningService
from anomascope.app.review.worklists import TuningView
from anomascope.app.tuning import curves_figure
from anomascope.engine.tuning import Criterion


@dataclass(frozen=True)
class SummaryTab:
    """What summarising a session fills: the last `SessionSummary` (`summary_state`, whose proposal "save"
    stores), its text, its curves and the readers' agreement."""

    summary_state: gr.State
    summary_text: gr.Markdown
    readers_plot: gr.Plot
    truth_plot: gr.Plot
    agreement: gr.Dataframe

    def outputs(self) -> list:
        return [self.summary_state, self.summary_text, self.readers_plot, self.truth_plot, self.agreement]


def on_summarise(service: TuningService, tab: SummaryTab, view: TuningView | None, text):
    if view is None:
        return {tab.summary_text: "Start a tuning session and save some cases first."}
    try:
        summary = service.summary(view, Criterion.parse((text or "").strip()))
        agreements = service.readers_agreement(view)
    except Exception as exc:
        return {tab.summary_text: friendly(exc)}
    return {
        tab.summary_state: summary,
        tab.summary_text: _summary_text(summary) + _agreement_text(agreements),
        tab.agreement: _agreement_rows(agreements),
        tab.readers_plot: curves_figure(summary.readers, "Against the readers' saved masks"),
        tab.truth_plot: gr.update(
            value=curves_figure(summary.truth, "Against ground truth") if summary.truth else None,
            visible=summary.truth is not None,
        ),
    }


def on_save_preset(
    app: ReviewApp,
    service: TuningService,
    login: bool,
    preset_status: gr.Markdown,
    method_info: gr.Markdown,
    view: TuningView | None,
    summary: SessionSummary | None,
    name,
    who,
    request: gr.Request,
):
    if view is None or summary is None:
        return {preset_status: "Summarise a tuning session first."}
    try:
        preset = service.save_threshold(view, summary, name, actor(login, who, request))
    except Exception as exc:
        return {preset_status: friendly(exc)}
    return {
        preset_status: f"Saved site threshold **{preset.name}** version {preset.version} = {preset.value:.4g} "
        f"({preset.criterion} = {preset.figure:.4g} on {preset.n_cases} cases); the next run offers it.",
        method_info: method_text(app, view.label),
    }


def _summary_text(summary: SessionSummary) -> str:
    """The proposals in words: against the readers' masks (what "save" stores) and against ground truth."""
    readers = summary.readers
    findings = int(readers.curves.has_finding.sum())
    text = (
        f"Proposed site threshold **{readers.threshold:.4g}** by {readers.criterion} = {readers.figure:.4g}, "
        f"against the readers' saved masks on {readers.n_cases} cases ({findings} with findings); "
        f"bands are 95% bootstrap intervals over {readers.resamples} resamples of cases."
    )
    if summary.truth is not None:
        truth = summary.truth
        text += (
            f"\n\nAgainst ground truth ({truth.n_cases} cases): {truth.threshold:.4g} by {truth.criterion} = "
            f"{truth.figure:.4g}."
        )
    return text


def _agreement_text(agreements: list[CaseAgreement]) -> str:
    if not agreements:
        return "\n\nReaders against each other: no case has masks from two readers with this method yet."
    dice = [a.dice for a in agreements]
    spreads = [a.threshold_spread for a in agreements if a.threshold_spread is not None]
    text = (
        f"\n\nReaders against each other on {len(agreements)} cases: mean Dice between readers "
        f"{np.mean(dice):.3f} (lowest {min(dice):.3f})"
    )
    return text + (f", median threshold spread {np.median(spreads):.4g}." if spreads else ".")


def _agreement_rows(agreements: list[CaseAgreement]) -> list[list]:
    return [
        [
            a.name,
            ", ".join(a.readers),
            round(a.dice, 4),
            ", ".join("—" if t is None else f"{t:.4g}" for t in a.thresholds),
            "—" if a.threshold_spread is None else f"{a.threshold_spread:.4g}",
        ]
        for a in agreements
    ]
