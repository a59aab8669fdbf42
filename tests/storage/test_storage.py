"""Round trips, versioning, rollback, concurrent writers, migrations and export."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from anomascope.storage import (
    AccountStatus,
    Annotation,
    AuditEvent,
    Case,
    Database,
    ImmutableRowError,
    StorageError,
    ThresholdPreset,
    account_status,
    add_case,
    authenticate,
    case_history,
    decode_mask,
    encode_mask,
    record_run,
    save_annotation,
    save_preset,
)
from anomascope.storage.models import utcnow
from anomascope.storage.users import HASHER
from tests.conftest import POSTGRES_URL


def _case(db: Database, name: str = "x.png", shape=(1, 3, 8, 10), **kwargs) -> Case:
    return add_case(
        db,
        content_hash=(name * 64)[:64],
        source_name=name,
        format=kwargs.pop("format", "png"),
        modality="XC",
        shape=list(shape),
        spacing=kwargs.pop("spacing", [0.5, 0.25]),
        metadata=kwargs.pop("metadata", {}),
        actor="tester",
    )


def _count(db: Database, model) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_postgres_is_tested_in_ci():
    """CI must exercise PostgreSQL, not skip it silently."""
    if os.environ.get("CI"):
        assert POSTGRES_URL, "CI runs without ANOMASCOPE_TEST_POSTGRES_URL: .ci/run should start PostgreSQL"


def test_mask_encoding_is_lossless():
    mask = np.random.default_rng(0).random((3, 17, 23)) > 0.7
    np.testing.assert_array_equal(decode_mask(*encode_mask(mask)), mask)


def test_round_trip_and_history(db_url):
    db = Database(db_url)
    case = _case(db)
    assert _case(db).id == case.id  # same content: same case
    run = record_run(
        db,
        case_id=case.id,
        method="spr",
        bundle_id="spr-abc",
        weights_hash="f" * 64,
        parameters={"num_perturbations": 3, "seed": 0},
        threshold=1.5,
        threshold_method="target_fpr",
        image_score=2.0,
        seconds=0.4,
        device="cpu",
        actor="dr a",
    )
    mask = np.zeros((8, 10), bool)
    mask[2:5, 3:7] = True
    first = save_annotation(db, case_id=case.id, run_id=run.id, mask=mask, author="dr a", label="lesion", note="n")
    fixed = mask.copy()
    fixed[6, 6] = True
    second = save_annotation(db, case_id=case.id, run_id=run.id, mask=fixed, author="dr b", corrects=first.lineage)
    history = case_history(db, case.id)
    assert [r.id for r in history.runs] == [run.id]
    assert history.runs[0].parameters == {"num_perturbations": 3, "seed": 0}
    assert [(a.version, a.lineage) for a in history.annotations] == [(1, first.lineage), (2, first.lineage)]
    np.testing.assert_array_equal(
        decode_mask(history.annotations[0].mask_shape, history.annotations[0].mask_data), mask
    )
    np.testing.assert_array_equal(
        decode_mask(history.annotations[1].mask_shape, history.annotations[1].mask_data), fixed
    )
    assert second.version == 2
    with db.sessions() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["case.add", "run.add", "annotation.add", "annotation.correct"]
    db.dispose()


def test_saved_rows_are_never_changed(db_url):
    db = Database(db_url)
    case = _case(db)
    save_annotation(db, case_id=case.id, mask=np.ones((2, 2)), author="dr")
    with pytest.raises(ImmutableRowError):
        with db.sessions() as session:
            session.scalar(select(Annotation)).note = "edited"
            session.commit()
    with pytest.raises(ImmutableRowError):
        with db.sessions() as session:
            session.delete(session.scalar(select(AuditEvent)))
            session.commit()
    db.dispose()


def test_failed_write_rolls_back_everything(db_url):
    db = Database(db_url)
    case = _case(db)
    before = (_count(db, Annotation), _count(db, AuditEvent))
    with pytest.raises(StorageError, match="rolled back"):
        save_annotation(db, case_id=case.id, run_id=9999, mask=np.ones((2, 2)), author="dr")  # no such run
    with pytest.raises(StorageError, match="rolled back"):
        with db.transaction() as session:
            session.add(AuditEvent(actor="x", action="half", target="t", details={}))
            session.flush()
            session.add(Annotation(case_id=case.id, mask_shape=[1], mask_data=b"", author=None, version=1))
    assert (_count(db, Annotation), _count(db, AuditEvent)) == before
    with pytest.raises(StorageError, match="no annotation with lineage"):
        save_annotation(db, case_id=case.id, mask=np.ones((2, 2)), author="dr", corrects="nope")
    with pytest.raises(StorageError, match="reader's name"):
        save_annotation(db, case_id=case.id, mask=np.ones((2, 2)), author=" ")
    db.dispose()


def test_presets_are_versioned_per_bundle_and_never_changed(db_url):
    db = Database(db_url)
    first = save_preset(db, bundle_id="sano-1", name="screening", value=3.0, provenance="val FPR 1%", actor="dr")
    again = save_preset(
        db,
        bundle_id="sano-1",
        name="screening",
        value=4.0,
        provenance="site session",
        actor="dr b",
        readout="sano",
        criterion="sensitivity=0.9",
        figure=0.91,
        n_cases=40,
    )
    other = save_preset(db, bundle_id="sano-2", name="screening", value=4.0, provenance="other bundle", actor="dr")
    assert (first.version, again.version, other.version) == (1, 2, 1)
    assert (again.criterion, again.figure, again.n_cases, again.actor) == ("sensitivity=0.9", 0.91, 40, "dr b")
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(text("UPDATE threshold_presets SET value = 0"))
    with db.sessions() as session:
        assert sorted(session.scalars(select(ThresholdPreset.value))) == [3.0, 4.0, 4.0]
        assert [e.details["version"] for e in session.scalars(select(AuditEvent))] == [1, 2, 1]
    db.dispose()


def test_two_processes_writing_at_once_lose_nothing(db_url):
    db = Database(db_url)
    case = _case(db)
    root = save_annotation(db, case_id=case.id, mask=np.zeros((4, 4)), author="seed")
    per_process = 10
    script = Path(__file__).with_name("writer_process.py")
    repo = Path(__file__).parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), db_url, str(case.id), root.lineage, name, str(per_process)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("reader-a", "reader-b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    with db.sessions() as session:
        rows = list(session.scalars(select(Annotation)))
    assert len(rows) == 1 + 2 * 2 * per_process
    versions = sorted(a.version for a in rows if a.lineage == root.lineage)
    assert versions == list(range(1, 2 * per_process + 2))  # every correction got its own version
    db.dispose()


def test_migration_from_empty_and_from_older_schema(db_url):
    fresh = Database(db_url)
    assert fresh.revision() == "0008"
    fresh.dispose()


def test_older_database_is_upgraded_with_its_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = Database(url, migrate=False)
    old.upgrade("0001")
    with old.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO cases (id, content_hash, source_name, format, modality, shape, metadata, created) "
                "VALUES (1, 'h', 'old.png', 'png', 'XC', '[1,1,2,2]', '{}', '2025-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO annotations (lineage, version, case_id, mask_shape, mask_data, author, created) "
                "VALUES ('l1', 1, 1, '[2,2]', :data, 'dr old', '2025-01-01 00:00:00')"
            ),
            {"data": encode_mask(np.eye(2, dtype=bool))[1]},
        )
    old.dispose()
    db = Database(url)
    assert db.revision() == "0008"
    history = case_history(db, 1)
    assert history.annotations[0].author == "dr old" and history.annotations[0].label is None
    assert history.annotations[0].threshold is None  # 0003: older versions keep their run's threshold
    again = save_annotation(db, case_id=1, mask=np.ones((2, 2)), author="dr new", corrects="l1", label="fixed")
    assert again.version == 2
    db.dispose()


def test_accounts_made_before_lockouts_existed_sign_in_after_the_upgrade(db_url):
    old = Database(db_url, migrate=False)
    old.upgrade("0007")
    with old.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (name, password_hash, active, created) VALUES ('dr old', :hash, :on, :now)"),
            {"hash": HASHER.hash("a long enough password"), "on": True, "now": utcnow()},
        )
    old.dispose()
    db = Database(db_url)
    assert account_status(db, "dr old") is AccountStatus.ACTIVE
    assert authenticate(db, "dr old", "a long enough password")
    db.dispose()


def test_foreign_keys_and_wal_on_sqlite(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


def test_default_database_lives_in_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ANOMASCOPE_DATA_DIR", str(tmp_path / "data"))
    db = Database()
    assert (tmp_path / "data" / "anomascope.sqlite").exists()
    db.dispose()


# --- export -------------------------------------------------------------------------------------


def _populated(db_url: str) -> tuple[Database, dict]:
    db = Database(db_url)
    photo = _case(db, "skin.png", shape=(1, 3, 6, 8))
    volume = _case(
        db,
        "head.nii.gz",
        shape=(3, 1, 4, 5),
        format="nifti",
        spacing=[2.0, 1.5],
        metadata={"affine": (np.diag([1.5, 2.0, 3.0, 1.0])).tolist(), "slice_spacing": 3.0},
    )
    run = record_run(
        db,
        case_id=photo.id,
        method="sano",
        bundle_id="sano-xyz",
        weights_hash="e" * 64,
        parameters={"timestep": 0},
        threshold=0.7,
        threshold_method="max_f1",
        image_score=1.0,
        seconds=0.1,
        device="cpu",
        actor="dr",
    )
    mask2d = np.zeros((6, 8), bool)
    mask2d[1:3, 2:6] = True
    volume_mask = np.zeros((3, 4, 5), bool)
    volume_mask[1, 1:3, 0:2] = True
    a = save_annotation(db, case_id=photo.id, run_id=run.id, mask=mask2d, author="dr a", label="lesion", note="check")
    b = save_annotation(db, case_id=volume.id, mask=volume_mask, author="dr b")
    return db, {"photo": (a, mask2d), "volume": (b, volume_mask)}


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_tables_reread(db_url, tmp_path, fmt):
    from anomascope.app.export import export

    db, saved = _populated(db_url)
    [path] = export(db, tmp_path / "out", fmt)
    if fmt == "csv":
        rows = list(csv.DictReader(path.open()))
    else:
        rows = json.loads(path.read_text())
    assert len(rows) == 2
    photo = next(r for r in rows if r["source_name"] == "skin.png")
    assert str(photo["method"]) == "sano" and str(photo["bundle_id"]) == "sano-xyz"
    assert float(photo["threshold"]) == 0.7 and photo["threshold_method"] == "max_f1"
    assert int(photo["mask_pixels"]) == 8 and float(photo["mask_mm2"]) == pytest.approx(8 * 0.5 * 0.25)
    assert photo["author"] == "dr a" and photo["label"] == "lesion"
    db.dispose()


def test_export_png_and_nifti_reread(db_url, tmp_path):
    from anomascope.app.export import export

    db, saved = _populated(db_url)
    pngs = export(db, tmp_path / "png", "png")
    assert len(pngs) == 1 + 3
    photo_png = next(p for p in pngs if "slice0000" in p.name and f"ann{saved['photo'][0].id}_" in p.name)
    np.testing.assert_array_equal(np.asarray(Image.open(photo_png)) > 0, saved["photo"][1])
    niftis = export(db, tmp_path / "nii", "nifti")
    volume_file = next(p for p in niftis if f"ann{saved['volume'][0].id}_" in p.name)
    image = nib.load(volume_file)
    np.testing.assert_allclose(image.affine, np.diag([1.5, 2.0, 3.0, 1.0]))
    from anomascope.engine.io import nifti_slices

    np.testing.assert_array_equal(nifti_slices(np.asarray(image.dataobj))[:, 0] > 0, saved["volume"][1])
    only_b = export(db, tmp_path / "b", "json", author="dr b")
    assert [r["author"] for r in json.loads(only_b[0].read_text())] == ["dr b"]
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    assert json.loads(export(db, tmp_path / "f", "json", since=future)[0].read_text()) == []
    db.dispose()


def test_export_cli(tmp_path):
    from anomascope.app.cli import main

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    _populated(url)[0].dispose()
    assert main(["export", "--db", url, "--format", "csv", "--out", str(tmp_path / "o"), "--since", "2020-01-01"]) == 0
    assert len(list(csv.DictReader((tmp_path / "o" / "annotations.csv").open()))) == 2
    assert main(["export", "--db", url, "--format", "csv", "--out", str(tmp_path / "o"), "--since", "soon"]) == 2


def test_case_summaries_count_runs_and_annotations(db_url):
    from anomascope.storage import case_summaries

    db, saved = _populated(db_url)
    counts = {case.source_name: (runs, notes) for case, runs, notes in case_summaries(db)}
    assert counts == {"skin.png": (1, 1), "head.nii.gz": (0, 1)}
    db.dispose()
