"""Scoring the next cases of a tuning session in the background while the reader works, and keeping the maps
a session showed, so that its summary does not score them again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from anomascope.app.review.app import ReviewApp
from anomascope.app.review.cases import content_hash
from anomascope.app.review.session import ReviewError
from anomascope.app.review.worklists import TuningView, WorklistCase
from anomascope.engine.inference import CaseResult, score_case
from anomascope.engine.io import Case, load_case
from anomascope.storage import case_history

LOOKAHEAD = 2  # cases scored in the background ahead of the reader
MAP_CACHE_BYTES = 512 * 2**20  # the session maps kept for the summary


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
        loaded = load_case(case.path if case.path else stored_path(self.app, case))
        return loaded, score_case(predictor, loaded)


def _outcome(future: Future | None) -> tuple[Case, CaseResult] | None:
    if future is None:
        return None
    try:
        return future.result()
    except Exception:  # noqa: BLE001 - scored again in the foreground, where the error reaches the reader
        return None


def _key(case: WorklistCase) -> str:
    return str(case.path) if case.path else f"case:{case.case_id}"


def stored_path(app: ReviewApp, case: WorklistCase) -> str:
    if case.case_id is None:  # a PACS series is stored once it is opened
        raise ReviewError(f"{case.name}: this PACS series was not opened yet, so no copy of it is stored")
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
