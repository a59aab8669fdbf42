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
from anomascope.app.review.annotations import Submission
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.session import ReviewError, ReviewSession
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
        app.save(session, Submission(_payload(session, np.ones((1, 150, 200), bool), 0.5, edited=True), "dr a"))
    assert _counts(app.db) == before


def test_readers_correcting_at_once_lose_nothing(db_url, tmp_path):
    app = _app(db_url, tmp_path)
    first = _ran(app)
    first, _ = app.save(first, Submission(_payload(first, np.zeros((1, 150, 200), bool), 0.5, edited=True), "dr a"))
    rng = np.random.default_rng(0)
    sent: dict[int, np.ndarray] = {}  # annotation id -> the mask its reader sent
    errors = []
    start = threading.Barrier(READERS)

    def reader(name: str, masks: list[np.ndarray]) -> None:
        try:
            session, _ = app.scene(app.open_saved(first.case_id))  # each reader's own page
            start.wait()
            for mask in masks:
                session, _ = app.save(session, Submission(_payload(session, mask, 0.5, edited=True), name))
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


def _label(app: ReviewApp, method: str, bundle: str) -> str:
    return next(label for label in app.catalogue.choices if label.startswith(f"{method.upper()} · {bundle} "))


def test_a_save_records_the_threshold_of_its_own_run(tmp_path):
    """A viewer that kept the previous case's threshold (issue 33) must not get it recorded for this case."""
    app = _app(f"sqlite:///{tmp_path / 'a.sqlite'}", tmp_path)
    photo = _ran(app)
    other = app.open_file(ROOT / "assets" / "samples" / "ISIC_0024318.jpg", "dr a")  # the next case, another method
    other, _ = app.scene(app.run(other, _label(app, "ppii", "ham10000-ppii"), "dr a"))
    assert not np.isclose(photo.run.presets["max_f1"], other.run.presets["max_f1"])
    mask = np.zeros((other.case.shape[0], *other.case.shape[-2:]), bool)
    before = _counts(app.db)
    for stale, how, why in [
        (photo.run.presets["max_f1"], "max_f1", "max_f1 is"),  # another run's preset under its name
        (-5.0, "manual", "map on screen runs from"),  # typed out of the map's range
        (photo.run.presets["max_f1"], "site (v1)", "offers no site"),  # a preset this run does not have
        (None, "manual", "map is on screen"),
    ]:
        with pytest.raises(ReviewError, match=f"the viewer sent .*which is not this image's: .*{why}"):
            app.save(other, Submission(_payload(other, mask, stale, how), "dr a"))
    assert _counts(app.db) == before
    other, said = app.save(other, Submission(_payload(other, mask, other.run.presets["max_f1"], "max_f1"), "dr a"))
    assert f"threshold {other.run.presets['max_f1']:.4g} (max_f1)" in said
    [annotation] = case_history(app.db, other.case_id).annotations
    assert (annotation.threshold, annotation.threshold_method) == (other.run.presets["max_f1"], "max_f1")


def test_a_reopened_annotation_keeps_its_own_threshold(tmp_path):
    app = _app(f"sqlite:///{tmp_path / 'a.sqlite'}", tmp_path)
    photo = _ran(app)
    mask = np.zeros((1, 150, 200), bool)
    mask[40:80, 60:120] = True
    app.save(photo, Submission(_payload(photo, mask, photo.run.threshold, photo.run.threshold_method), "dr a"))
    reopened, _ = app.scene(app.open_saved(photo.case_id))  # no run: the saved mask, no map
    assert reopened.run is None
    with pytest.raises(ReviewError, match="no map is on screen"):
        app.save(reopened, Submission(_payload(reopened, mask, 0.05309, "max_f1"), "dr a"))  # the case shown before's
    reopened, _ = app.save(reopened, Submission(_payload(reopened, mask, None, "manual", edited=True), "dr a"))
    first, second = case_history(app.db, photo.case_id).annotations
    assert (second.threshold, second.threshold_method) == (first.threshold, first.threshold_method)
    assert (first.threshold, first.threshold_method) == (photo.run.threshold, photo.run.threshold_method)
