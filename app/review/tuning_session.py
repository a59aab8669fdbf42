"""Threshold-tuning sessions on the review page, as plain functions (no Gradio here).

A reader picks one method and a worklist (a folder, a prepared split, the database's cases or the PACS's
image series) and steps through it: each case opens with the method already run (one that cannot be
opened says why, and Next goes on past it), the reader settles the threshold, corrects the
mask and saves it, and the save is recorded as the session's entry for that case. While the reader
works, the next cases are scored in the background. The summary compares the maps with the masks the
reader saved (and with ground truth where the worklist has it) at every threshold, proposes a site
threshold by the criterion the reader picks, and saving it stores a versioned preset with its provenance.
The worklists are in worklists.py; the background scoring and the maps a session keeps, in prefetch.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from anomascope.app.review.annotations import Submission
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.prefetch import Prefetcher, SessionMaps, stored_path
from anomascope.app.review.session import ReviewError, ReviewSession
from anomascope.app.review.worklists import TuningView, WorklistCase, worklist
from anomascope.app.tuning import TunedCase, Tuning, summarise
from anomascope.engine.data import read_mask
from anomascope.engine.inference import score_case
from anomascope.engine.io import Case, load_case
from anomascope.engine.tuning import Criterion, TuningError
from anomascope.storage import (
    ThresholdPreset,
    decode_mask,
    list_cases,
    readers_entries,
    save_preset,
    start_tuning_session,
    tuning_entries,
)


class CaseNotOpened(ReviewError):
    """The worklist case could not be opened. `view` has moved to it, with no case open, so that Next goes
    on past it; the case on screen stays the one before (a save of it is refused as not the session's
    current case), and the session's saved entries are untouched. The cause is the reason."""

    def __init__(self, view: TuningView):
        super().__init__(f"{view.progress} could not be opened")
        self.view = view


@dataclass(frozen=True)
class CaseAgreement:
    """Readers against each other on one case: their latest masks with this read-out, across sessions."""

    case_id: int
    name: str
    readers: tuple[str, ...]
    dice: float  # mean Dice over pairs of readers (two empty masks agree: 1)
    thresholds: tuple[float | None, ...]  # each reader's threshold, in the order of `readers`

    @property
    def threshold_spread(self) -> float | None:
        values = [t for t in self.thresholds if t is not None]
        return max(values) - min(values) if len(values) > 1 else None


@dataclass(frozen=True)
class SessionSummary:
    """The session's curves against the readers' saved masks and, where the cases have it, ground truth."""

    readers: Tuning
    truth: Tuning | None
    n_saved: int


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


class TuningService:
    def __init__(self, app: ReviewApp, folder_roots: Iterable[Path] = ()):
        """`folder_roots`: the server folders a worklist may be taken from (none: only the database and the
        PACS)."""
        self.app = app
        self.folder_roots = tuple(folder_roots)
        self.prefetch = Prefetcher(app)
        self.shown = SessionMaps()
        self.previews: dict[str, str] = {}  # session uid -> the token of its latest preview's files

    def preview(self, view: TuningView) -> dict | None:
        """The next case of the session as the viewer will show it, ready before the reader steps on
        (ReviewApp.preview: nothing is stored). None at the last case, for a case not yet scored in the
        background (a PACS series, say), or one that could not be scored. Only the latest preview of a
        session keeps its files."""
        position = view.position + 1
        if position >= len(view.cases):
            return None
        scored = self.prefetch.peek(view.label, view.cases[position])
        if scored is None:
            return None
        case, result = scored
        described = self.app.preview(case, view.label, result)
        self.app.volumes.drop(self.previews.get(view.uid))
        self.previews[view.uid] = described["preview"]
        return described

    def start(self, source: str, label: str, reader: str) -> TuningView:
        if label not in self.app.catalogue.choices:
            raise ReviewError("pick a trained method first")
        if not reader or not reader.strip():
            raise ReviewError("enter the reader's name before starting a tuning session")
        cases = worklist(source, self.app, self.folder_roots)
        choice = self.app.catalogue.choices[label]
        record = start_tuning_session(
            self.app.db,
            bundle_id=choice.bundle.id,
            readout=choice.method,
            reader=reader,
            worklist={"source": source.strip(), "cases": [case.name for case in cases]},
        )
        return TuningView(record.id, record.uid, label, choice.method, choice.bundle.id, tuple(cases))

    def open(self, view: TuningView, position: int, reader: str) -> tuple[TuningView, ReviewSession]:
        """The case at `position`, opened with the session's method run on it; the next cases start
        scoring in the background."""
        if not 0 <= position < len(view.cases):
            raise ReviewError(f"the worklist has cases 1 to {len(view.cases)}")
        case = view.cases[position]
        try:
            ran = self.app.run(self._opened(case, reader), view.label, reader, self.prefetch.take(view.label, case))
        except Exception as error:  # any reason the case cannot be shown; the page says it
            moved = replace(view, position=position, case_id=None)
            self.prefetch.ahead(moved)
            raise CaseNotOpened(moved) from error
        self.shown.put(view.label, ran.opened_case, ran.shown_run.result.heatmap)
        cases = list(view.cases)
        cases[position] = replace(case, case_id=ran.case_id)  # a PACS series is fetched once
        moved = replace(view, cases=tuple(cases), position=position, case_id=ran.case_id)
        self.prefetch.ahead(moved)
        return moved, ran

    def _opened(self, case: WorklistCase, reader: str) -> ReviewSession:
        if case.path is not None:
            return self.app.open_file(case.path, reader)
        if case.case_id is None and case.series is not None:
            return self.app.open_pacs_series(*case.series, reader)
        return self.app.open_saved(case.case_id)

    def step(self, view: TuningView, delta: int, reader: str) -> tuple[TuningView, ReviewSession]:
        """The case `delta` away, stopping at either end; at an end already, the reader is told so and the case
        on screen stays as it is (reloading it would drop the reader's edits)."""
        position = min(max(view.position + delta, 0), len(view.cases) - 1)
        if position == view.position and delta:
            end = "last" if delta > 0 else "first"
            raise ReviewError(f"case {position + 1} of {len(view.cases)} is the {end} case of this session")
        return self.open(view, position, reader)

    def save(self, view: TuningView, session: ReviewSession, submission: Submission) -> tuple[ReviewSession, str]:
        """Save the mask on screen as the session's entry for the current case."""
        if view.case_id is None:
            raise ReviewError(f"{view.progress} could not be opened: there is nothing of it to save; go on with Next")
        if session.case_id != view.case_id:
            raise ReviewError("the case on screen is not the tuning session's current case; step back to it")
        saved, said = self.app.save(session, submission, tuning=(view.session_id, view.position))
        return saved, f"{said} Recorded for the tuning session ({view.progress})."

    def summary(self, view: TuningView, criterion: Criterion, resamples: int = 200, seed: int = 0) -> SessionSummary:
        """The curves over the saved cases against the readers' masks, and against ground truth where the
        worklist has it, with the threshold each proposes by `criterion`."""
        entries = tuning_entries(self.app.db, view.session_id)
        if not entries:
            raise TuningError("save at least one case of the session first")
        predictor = self.app.catalogue.predictor(view.label, self.app.device)
        maps, saved, truths, cases, truth_cases = [], [], [], [], []
        for position, (_, annotation) in sorted(entries.items()):
            case = view.cases[position]
            heatmap = self._map(view.label, load_case(case.path if case.path else stored_path(self.app, case)))
            maps.append(heatmap)
            saved.append(decode_mask(annotation.mask_shape, annotation.mask_data).reshape(heatmap.shape))
            cases.append(TunedCase(case.name, case.group))
            if case.truth is not None:
                truths.append((heatmap, read_mask(case.truth).reshape(heatmap.shape)))
                truth_cases.append(TunedCase(case.name, case.group))
        readers = summarise(predictor, maps, saved, cases, criterion, resamples, seed)
        truth = (
            summarise(
                predictor, [m for m, _ in truths], [t for _, t in truths], truth_cases, criterion, resamples, seed
            )
            if truths
            else None
        )
        return SessionSummary(readers, truth, len(entries))

    def _map(self, label: str, case: Case) -> np.ndarray:
        """The method's map of the case: the one the session showed, or scored now."""
        heatmap = self.shown.get(label, case)
        if heatmap is None:
            predictor = self.app.catalogue.predictor(label, self.app.device)
            heatmap = score_case(predictor, case).heatmap
            if heatmap is None:
                raise TuningError(f"{predictor.name} scores whole images and makes no map: there is no pixel threshold")
            self.shown.put(label, case, heatmap)
        return heatmap

    def readers_agreement(self, view: TuningView) -> list[CaseAgreement]:
        """Each case that two or more readers saved in tuning sessions with this bundle's read-out: the Dice
        between their latest masks and the spread of their thresholds, the yardstick for a method's error."""
        latest: dict[int, dict[str, tuple]] = {}
        for entry, annotation, reader in readers_entries(self.app.db, view.bundle_id, view.readout):
            latest.setdefault(entry.case_id, {})[reader] = (entry, annotation)
        names = {record.id: record.source_name for record in list_cases(self.app.db, limit=None)}
        agreements = []
        for case_id, by_reader in sorted(latest.items()):
            if len(by_reader) < 2:
                continue
            readers = tuple(sorted(by_reader))
            masks = [decode_mask(by_reader[r][1].mask_shape, by_reader[r][1].mask_data) for r in readers]
            dice = [_dice(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :]]
            thresholds = tuple(by_reader[r][0].threshold for r in readers)
            agreements.append(
                CaseAgreement(case_id, names.get(case_id, str(case_id)), readers, float(np.mean(dice)), thresholds)
            )
        return agreements

    def save_threshold(self, view: TuningView, summary: SessionSummary, name: str, reader: str) -> ThresholdPreset:
        """Store the threshold proposed against the readers' masks as the next version of preset `name`."""
        if not name or not name.strip():
            raise ReviewError("name the site threshold before saving it")
        tuning = summary.readers
        findings = int(tuning.curves.has_finding.sum())
        return save_preset(
            self.app.db,
            bundle_id=view.bundle_id,
            name=name.strip(),
            value=tuning.threshold,
            provenance=(
                f"tuning session {view.uid}: {tuning.criterion} = {tuning.figure:.4g} against the readers' masks on "
                f"{tuning.n_cases} cases ({findings} with findings)"
            ),
            actor=reader.strip(),
            readout=view.readout,
            criterion=str(tuning.criterion),
            figure=tuning.figure,
            n_cases=tuning.n_cases,
            session_id=view.uid,
        )
