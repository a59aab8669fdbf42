"""Threshold-tuning sessions on the review page, as plain functions (no Gradio here).

A reader picks one method and a worklist (a folder, a prepared split, the database's cases or the PACS's
image series) and steps through it: each case opens with the method already run (one that cannot be
opened says why, and Next goes on past it), the reader settles the threshold, corrects the
mask and saves it, and the save is recorded as the session's entry for that case. While the reader
works, the next cases are scored in the background. The summary compares the maps with the masks the
reader saved (and with ground truth where the worklist has it) at every threshold, proposes a site
threshold by the criterion the reader picks, and saving it stores a versioned preset with its provenance.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from anomascope.app.casestore import content_hash
from anomascope.app.review import ReviewApp, ReviewError, ReviewSession
from anomascope.app.tuning import TunedCase, Tuning, summarise
from anomascope.app.uploads import inside
from anomascope.engine.data import list_images, read_mask
from anomascope.engine.inference import CaseResult, score_case
from anomascope.engine.io import Case, load_case
from anomascope.engine.tuning import Criterion, TuningError
from anomascope.storage import (
    ThresholdPreset,
    case_history,
    decode_mask,
    list_cases,
    readers_entries,
    save_preset,
    start_tuning_session,
    tuning_entries,
)

DATABASE = "database"  # the worklist source that means "the cases already in the database"
PACS_SOURCE = "dicomweb:"  # "dicomweb:TEXT": the image series of the PACS's studies that TEXT finds
ROOTS_ENV = "ANOMASCOPE_WORKLIST_ROOTS"  # the server folders offered as worklists, os.pathsep-separated
LOOKAHEAD = 2  # cases scored in the background ahead of the reader
MAP_CACHE_BYTES = 512 * 2**20  # the session maps kept for the summary


@dataclass(frozen=True)
class WorklistCase:
    """One case of a worklist: a file to open, a case already in the database, or a PACS series (fetched
    when the reader reaches it), and its ground-truth mask where the worklist has one."""

    name: str
    group: str  # cases of one group (a patient) are resampled together in the summary's bands
    path: Path | None = None
    case_id: int | None = None  # the database case; a PACS series has one once it was opened
    truth: Path | None = None
    series: tuple[str, str] | None = None  # (study UID, series UID) on the PACS


@dataclass(frozen=True)
class TuningView:
    """A reader's tuning session as the page holds it: which session, which method, where in the worklist."""

    session_id: int
    uid: str
    label: str  # the catalogue choice
    readout: str
    bundle_id: str
    cases: tuple[WorklistCase, ...]
    position: int = 0
    case_id: int | None = None  # the database case open at `position`: a save of it is the session's entry

    @property
    def progress(self) -> str:
        return f"case {self.position + 1} of {len(self.cases)}: {self.cases[self.position].name}"


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


def worklist_roots() -> tuple[Path, ...]:
    """The server folders an administrator offers as tuning worklists (with what lies under them), from
    ANOMASCOPE_WORKLIST_ROOTS; none unless listed."""
    return tuple(Path(entry) for entry in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if entry.strip())


def worklist(source: str, app: ReviewApp, folder_roots: Iterable[Path] = ()) -> list[WorklistCase]:
    """The cases of `source`: "database", "dicomweb:TEXT" (the image series of the PACS's studies that
    TEXT finds), a prepared split (its test images, with their ground truth), or a folder of images (with
    X_mask.png beside an image as its ground truth, where present) under one of `folder_roots`."""
    text = source.strip()
    if text == DATABASE:
        cases = [
            WorklistCase(record.source_name, str(record.id), case_id=record.id)
            for record in list_cases(app.db, limit=None)
        ]
    elif text.startswith(PACS_SOURCE):
        cases = _pacs_series(text.removeprefix(PACS_SOURCE).strip(), app)
    else:
        root = _offered(text, folder_roots)
        cases = _within(_files(root), root)
    if not cases:
        raise ReviewError(f"{source}: no cases to tune on")
    return cases


def _pacs_series(text: str, app: ReviewApp) -> list[WorklistCase]:
    """Every image series of the studies the PACS finds for `text` (patient name, ID or accession number,
    as the PACS panel searches). Nothing is fetched here: a series is fetched into the case store when the
    reader reaches it. Series that hold no image (the Segmentations and Parametric Maps sent back, reports)
    are left out by their modality and SOP class."""
    if not text:
        raise ReviewError(f"'{PACS_SOURCE}' needs a patient name, ID or accession number to search the PACS for")
    return [
        WorklistCase(f"{patient_name or patient_id}: {title}", patient_id or study_uid, series=(study_uid, series_uid))
        for patient_name, patient_id, *_, study_uid in app.pacs_studies(text)
        for title, series_uid in app.pacs_series(study_uid, images_only=True)
    ]


def _offered(folder: str, roots: Iterable[Path]) -> Path:
    """`folder` when it lies under one of `roots`, links followed; any other is refused before anything in
    it is read, since the reader names it and the server would open whatever it can read there."""
    real = Path(os.path.realpath(folder))
    offered = [Path(os.path.realpath(root)) for root in roots]
    if not offered:
        raise ReviewError(
            f"{folder}: server folders are not offered as tuning worklists here; an administrator offers them "
            f"by listing their roots in {ROOTS_ENV}"
        )
    if not any(real == root or inside(real, root) for root in offered):
        raise ReviewError(
            f"{folder}: not under the server folders offered as tuning worklists ({', '.join(map(str, offered))}); "
            f"an administrator offers it by adding its root to {ROOTS_ENV}"
        )
    return real


def _within(cases: list[WorklistCase], root: Path) -> list[WorklistCase]:
    """The cases, once none of their files is a link out of the offered folder (it would open what lies there)."""
    for case in cases:
        for path in (case.path, case.truth):
            if path is not None and not inside(path, root):
                raise ReviewError(f"{path}: a link out of the worklist folder {root}; links out of it are refused")
    return cases


def _files(root: Path) -> list[WorklistCase]:
    if not root.is_dir():
        raise ReviewError(f"{root}: no such folder (give a folder of images, a prepared split or '{DATABASE}')")
    test = root / "test"
    if test.is_dir():
        split_file = root / "split.json"
        groups = json.loads(split_file.read_text()).get("groups", {}) if split_file.exists() else {}
        cases = []
        for kind in sorted(p for p in test.iterdir() if p.is_dir()):
            for path in list_images(kind):
                truth = root / "ground_truth" / kind.name / f"{path.stem}_mask.png"
                group = groups.get(f"test/{kind.name}/{path.name}", path.name)
                cases.append(WorklistCase(path.name, group, path, truth=truth if truth.exists() else None))
        return cases
    images = [p for p in list_images(root) if not p.stem.endswith("_mask")]
    return [
        WorklistCase(p.name, p.stem, p, truth=mask if (mask := p.with_name(f"{p.stem}_mask.png")).exists() else None)
        for p in images
    ]


class Prefetcher:
    """Scores worklist cases in a background thread, so that stepping to the next case shows its map at
    once; a result is handed out once and then forgotten."""

    def __init__(self, app: ReviewApp):
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomascope-prefetch")
        self.pending: dict[tuple[str, str], Future] = {}
        self.lock = threading.Lock()

    def ahead(self, view: TuningView) -> None:
        for case in view.cases[view.position + 1 : view.position + 1 + LOOKAHEAD]:
            if case.path is None and case.case_id is None:  # a PACS series not fetched yet: scored when opened
                continue
            key = (view.label, _key(case))
            with self.lock:
                if key not in self.pending:
                    self.pending[key] = self.pool.submit(self._score, view.label, case)

    def take(self, label: str, case: WorklistCase) -> CaseResult | None:
        """The background result for the case, waiting for it if it is being computed; None if it was
        never asked for or failed (the page then scores it, and says why it failed)."""
        with self.lock:
            future = self.pending.pop((label, _key(case)), None)
        scored = _outcome(future)
        return scored[1] if scored else None

    def peek(self, label: str, case: WorklistCase) -> tuple[Case, CaseResult] | None:
        """The case as loaded and its background result, waiting for it, and left for `take`; None as there."""
        with self.lock:
            future = self.pending.get((label, _key(case)))
        return _outcome(future)

    def _score(self, label: str, case: WorklistCase) -> tuple[Case, CaseResult]:
        predictor = self.app.catalogue.predictor(label, self.app.device)
        loaded = load_case(case.path if case.path else _stored_path(self.app, case))
        return loaded, score_case(predictor, loaded)


def _outcome(future: Future | None) -> tuple[Case, CaseResult] | None:
    if future is None:
        return None
    try:
        return future.result()
    except Exception:  # noqa: BLE001 - scored again in the foreground, where the error reaches the reader
        return None


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def _key(case: WorklistCase) -> str:
    return str(case.path) if case.path else f"case:{case.case_id}"


def _stored_path(app: ReviewApp, case: WorklistCase) -> str:
    stored = case_history(app.db, case.case_id).case.metadata_json.get("stored_path")
    if not stored:
        raise ReviewError(f"case {case.case_id}: its image file is no longer in the data folder")
    return stored


class SessionMaps:
    """The maps shown in tuning sessions, by method and case content, so that the summary does not score
    every saved case again (seconds a case with cddpm); the oldest go first past `budget` bytes."""

    def __init__(self, budget: int = MAP_CACHE_BYTES):
        self.budget = budget
        self.maps: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def put(self, label: str, case: Case, heatmap: np.ndarray | None) -> None:
        if heatmap is None or heatmap.nbytes > self.budget:
            return
        with self.lock:
            self.maps[(label, content_hash(case))] = heatmap
            while sum(m.nbytes for m in self.maps.values()) > self.budget:
                self.maps.popitem(last=False)

    def get(self, label: str, case: Case) -> np.ndarray | None:
        with self.lock:
            return self.maps.get((label, content_hash(case)))


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
        self.shown.put(view.label, ran.case, ran.run.result.heatmap)
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

    def save(
        self,
        view: TuningView,
        session: ReviewSession,
        payload: str,
        reader: str,
        label: str = "",
        note: str = "",
        acknowledged: bool = False,
    ) -> tuple[ReviewSession, str]:
        """Save the mask on screen as the session's entry for the current case."""
        if view.case_id is None:
            raise ReviewError(f"{view.progress} could not be opened: there is nothing of it to save; go on with Next")
        if session.case_id != view.case_id:
            raise ReviewError("the case on screen is not the tuning session's current case; step back to it")
        saved, said = self.app.save(
            session, payload, reader, label, note, acknowledged, tuning=(view.session_id, view.position)
        )
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
            heatmap = self._map(view.label, load_case(case.path if case.path else _stored_path(self.app, case)))
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
