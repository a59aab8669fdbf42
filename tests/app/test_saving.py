"""Saving through the review services: one transaction per save, and several readers correcting the
same annotation at once on SQLite and PostgreSQL, with nothing lost and versions contiguous."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from anomascope.app.bundles import discover
from anomascope.app.review import ReviewApp, ReviewSession
from anomascope.storage import Annotation, AuditEvent, Database, InferenceRun, StorageError, case_history, decode_mask
from tests.app.test_ui import _payload

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "assets" / "samples" / "ISIC_0024311.jpg"
READERS, SAVES_EACH = 4, 5


def _app(url: str, tmp_path: Path) -> ReviewApp:
    return ReviewApp(Database(url), discover([ROOT / "assets" / "models"]), tmp_path / "cases", torch.device("cpu"))


def _counts(db: Database) -> tuple[int, int, int]:
    with db.sessions() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model)) for model in (Annotation, AuditEvent, InferenceRun)
        )


def _ran(app: ReviewApp) -> ReviewSession:
    label = next(label for label, choice in app.catalogue.choices.items() if choice.method == "spr")
    session, _ = app.scene(app.run(app.open_file(SAMPLE, "dr a"), label, "dr a"))
    return session


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    app = _app(f"sqlite:///{tmp_path / 'a.sqlite'}", tmp_path)
    session = _ran(app)
    before = _counts(app.db)
    # The mask reads back wrong inside the save's transaction: the annotation and its audit row go.
    monkeypatch.setattr("anomascope.storage.records.decode_mask", lambda shape, data: np.zeros(shape, bool))
    with pytest.raises(StorageError, match="did not read back"):
        app.save(session, _payload(session, np.ones((1, 150, 200), bool), 0.5, edited=True), "dr a")
    assert _counts(app.db) == before


def test_readers_correcting_at_once_lose_nothing(db_url, tmp_path):
    app = _app(db_url, tmp_path)
    first = _ran(app)
    first, _ = app.save(first, _payload(first, np.zeros((1, 150, 200), bool), 0.5, edited=True), "dr a")
    rng = np.random.default_rng(0)
    sent: dict[int, np.ndarray] = {}  # annotation id -> the mask its reader sent
    errors = []
    start = threading.Barrier(READERS)

    def reader(name: str, masks: list[np.ndarray]) -> None:
        try:
            session, _ = app.scene(app.open_saved(first.case_id))  # each reader's own page
            start.wait()
            for mask in masks:
                session, _ = app.save(session, _payload(session, mask, 0.5, edited=True), name)
                sent[session.saved.annotation_id] = mask
        except Exception as exc:  # noqa: BLE001 - collected from the threads, then failed on below
            errors.append(exc)

    threads = [
        threading.Thread(target=reader, args=(f"dr {k}", [rng.random((1, 150, 200)) > 0.5 for _ in range(SAVES_EACH)]))
        for k in range(READERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    annotations = case_history(app.db, first.case_id).annotations
    assert len(annotations) == 1 + READERS * SAVES_EACH and len({a.lineage for a in annotations}) == 1
    assert sorted(a.version for a in annotations) == list(range(1, 2 + READERS * SAVES_EACH))
    for annotation in annotations[1:]:
        stored = decode_mask(annotation.mask_shape, annotation.mask_data).reshape(1, 150, 200)
        np.testing.assert_array_equal(stored, sent[annotation.id])
    app.db.dispose()
