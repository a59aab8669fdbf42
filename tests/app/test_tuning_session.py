"""Threshold-tuning sessions through the page's service functions: stepping a worklist with background
scoring, saves recorded as the session's entries, the summary against the saved masks and ground truth,
and the site threshold stored as a preset that the next case offers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from anomascope.app.bundles import discover
from anomascope.app.cli import main
from anomascope.app.review.annotations import Submission
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.session import ReviewError
from anomascope.app.review.tuning_session import CaseNotOpened, TuningService
from anomascope.app.tuning import curves_figure
from anomascope.engine.evaluation import load_test_split
from anomascope.engine.inference import score_case
from anomascope.engine.tuning import Criterion
from anomascope.storage import Database, StorageError, all_presets, decode_mask, tuning_entries
from tests.app.test_ui import _payload
from tests.synthetic import make_blob_dataset


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A calibrated training-free bundle (quick to make) and a folder of three cases with ground truth."""
    root = tmp_path_factory.mktemp("tuning")
    data = make_blob_dataset(root / "data", n_train=4, n_val=4, n_test=2)
    models = root / "models"
    assert (
        main(["train", "--method", "median-distance", "--data", str(data), "--out", str(models / "md"), "--quiet"]) == 0
    )
    worklist = root / "worklist"
    worklist.mkdir()
    for item in load_test_split(data, "test")[:3]:
        shutil.copy(item.path, worklist / item.path.name)
        truth = item.mask if item.mask is not None else np.zeros(Image.open(item.path).size[::-1], bool)
        Image.fromarray(truth.astype(np.uint8) * 255).save(worklist / f"{item.path.stem}_mask.png")
    return models, worklist


@pytest.fixture
def service(reference, tmp_path) -> TuningService:
    models, worklist = reference
    app = ReviewApp(
        Database(f"sqlite:///{tmp_path}/db.sqlite"), discover([models]), tmp_path / "cases", torch.device("cpu")
    )
    return TuningService(app, folder_roots=[worklist, tmp_path])


def _save(service: TuningService, view, session, mask: np.ndarray, threshold: float):
    session, _ = service.app.scene(session)
    return service.save(view, session, Submission(_payload(session, mask[None], threshold), "dr lead"))


def test_a_three_case_session_records_each_save_and_proposes_a_site_threshold(service, reference):
    _, worklist = reference
    label = next(iter(service.app.catalogue.choices))
    view = service.start(str(worklist), label, "dr lead")
    assert view.progress.startswith("case 1 of 3")

    view, first = service.open(view, 0, "dr lead")
    assert len(service.prefetch.pending) == 2  # the next two cases score in the background
    heatmap = first.run.result.heatmap[0]
    corrected = heatmap >= np.quantile(heatmap, 0.9)
    corrected[:2] = True  # the reader's correction: not what any threshold gives
    _save(service, view, first, corrected, float(np.quantile(heatmap, 0.9)))

    view, second = service.step(view, +1, "dr lead")
    assert view.position == 1 and view.progress.startswith("case 2 of 3")
    background = second.run.result.heatmap
    assert np.array_equal(
        background, score_case(service.app.catalogue.predictor(label, torch.device("cpu")), second.case).heatmap
    )
    second_mask = np.zeros(background.shape[1:], bool)
    _save(service, view, second, second_mask, float(background.max()))  # the top of the slider; nothing kept
    view, _ = service.step(view, +5, "dr lead")
    assert view.position == 2  # stepping stops at the last case
    with pytest.raises(ReviewError, match="case 3 of 3 is the last case of this session"):
        service.step(view, +1, "dr lead")  # and says so there, instead of reloading it
    view, again = service.step(view, -2, "dr lead")
    assert view.position == 0 and again.saved.version == 1  # the saved mask is what reopens

    entries = tuning_entries(service.app.db, view.session_id)
    assert sorted(entries) == [0, 1]
    stored = decode_mask(entries[0][1].mask_shape, entries[0][1].mask_data)
    assert np.array_equal(stored, corrected) and entries[0][0].threshold == pytest.approx(np.quantile(heatmap, 0.9))

    summary = service.summary(view, Criterion("dice"), resamples=20)
    readers = summary.readers
    for tuning, title in ((readers, "Against the readers' saved masks"), (summary.truth, "Against ground truth")):
        assert curves_figure(tuning, title).layout.title.text == title  # each plot says what it is against
    assert readers.n_cases == 2 and summary.truth is not None and summary.truth.n_cases == 2
    # The proposed threshold's mean Dice is the Dice of the first case's map against the saved mask there
    # (the second case has no finding), computed directly.
    flagged = heatmap >= readers.threshold
    direct = 2 * (flagged & corrected).sum() / (flagged.sum() + corrected.sum())
    assert readers.figure == pytest.approx(direct)

    preset = service.save_threshold(view, summary, "site A", "dr lead")
    assert (preset.version, preset.session, preset.n_cases, preset.criterion) == (1, view.uid, 2, "dice")
    assert [p.value for p in all_presets(service.app.db)] == [pytest.approx(readers.threshold)]
    fresh = service.app.run(service.app.open_file(next(worklist.glob("*[0-9].png"))), label, "dr b")
    assert fresh.run.presets["site A (site, v1)"] == pytest.approx(readers.threshold)


def test_a_session_needs_cases_a_method_and_a_reader(service, tmp_path):
    label = next(iter(service.app.catalogue.choices))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="no images found"):
        service.start(str(empty), label, "dr lead")
    with pytest.raises(ReviewError, match="no such folder"):
        service.start(str(tmp_path / "missing"), label, "dr lead")
    with pytest.raises(ReviewError, match="pick a trained method"):
        service.start(str(tmp_path), "no such method", "dr lead")
    with pytest.raises(ReviewError, match="reader's name"):
        service.start(str(tmp_path), label, " ")


def test_a_save_outside_the_worklist_is_refused_and_nothing_is_stored(service, reference):
    _, worklist = reference
    label = next(iter(service.app.catalogue.choices))
    view, session = service.open(service.start(str(worklist), label, "dr lead"), 0, "dr lead")
    session, _ = service.app.scene(session)
    mask = np.zeros(session.case.shape[-2:], bool)
    with pytest.raises(StorageError, match="no case at position 7"):
        service.app.save(
            session, Submission(_payload(session, mask[None], 1.0), "dr lead"), tuning=(view.session_id, 7)
        )
    assert tuning_entries(service.app.db, view.session_id) == {}
    assert service.app.history(session) == [row for row in service.app.history(session) if row[0] == "run"]


def worklist_with_a_broken_case(source, folder, after: int):
    """The worklist's cases with a corrupt PNG sorted right after case `after` (0-based; -1: first)."""
    shutil.copytree(source, folder)
    images = sorted(p for p in folder.iterdir() if not p.stem.endswith("_mask"))
    broken = folder / (f"{images[after].stem}~broken.png" if after >= 0 else "0-broken.png")
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not the rest of a picture")
    return images, broken


def test_a_case_that_cannot_be_opened_is_said_and_next_goes_past_it(service, reference, tmp_path):
    _, source = reference
    images, broken = worklist_with_a_broken_case(source, tmp_path / "worklist", after=0)
    label = next(iter(service.app.catalogue.choices))
    view = service.start(str(tmp_path / "worklist"), label, "dr lead")
    assert [case.name for case in view.cases] == [images[0].name, broken.name, *(p.name for p in images[1:])]
    view, first = service.open(view, 0, "dr lead")
    heatmap = first.run.result.heatmap[0]
    corrected = heatmap >= np.quantile(heatmap, 0.8)
    _save(service, view, first, corrected, float(np.quantile(heatmap, 0.8)))

    with pytest.raises(CaseNotOpened, match=f"case 2 of 4: {broken.name} could not be opened") as failed:
        service.step(view, +1, "dr lead")
    stuck = failed.value.view
    assert stuck.position == 1 and stuck.case_id is None
    assert broken.name in str(failed.value.__cause__)  # the reason names the file
    # The first case is still on screen: saving it now would record it as case 2, so it is refused.
    with pytest.raises(ReviewError, match="nothing of it to save; go on with Next"):
        _save(service, stuck, first, ~corrected, 0.0)
    view, third = service.step(stuck, +1, "dr lead")
    assert view.position == 2 and view.case_id == third.case_id
    np.testing.assert_array_equal(third.case.pixels, service.app.open_file(images[1]).case.pixels)
    [(position, (_, annotation))] = tuning_entries(service.app.db, view.session_id).items()
    assert position == 0
    saved = decode_mask(annotation.mask_shape, annotation.mask_data).reshape(corrected.shape)
    np.testing.assert_array_equal(saved, corrected)  # the reader's correction, as it was before the failure


def test_a_session_whose_first_case_cannot_be_opened_starts_there(service, reference, tmp_path):
    _, source = reference
    images, broken = worklist_with_a_broken_case(source, tmp_path / "worklist", after=-1)
    label = next(iter(service.app.catalogue.choices))
    view = service.start(str(tmp_path / "worklist"), label, "dr lead")
    with pytest.raises(CaseNotOpened, match=f"case 1 of 4: {broken.name}") as failed:
        service.open(view, 0, "dr lead")
    view, second = service.step(failed.value.view, +1, "dr lead")
    assert view.position == 1
    np.testing.assert_array_equal(second.case.pixels, service.app.open_file(images[0]).case.pixels)


def test_readers_against_each_other_across_sessions(service, reference):
    """Two readers' sessions with the same method: per case, the Dice between their latest masks and the
    spread of their thresholds; a reader's later save replaces their earlier one."""
    _, worklist = reference
    label = next(iter(service.app.catalogue.choices))
    shape = None
    saved = {}
    for reader, threshold in (("dr a", 0.2), ("dr b", 0.5)):
        view = service.start(str(worklist), label, reader)
        for position in (0, 1):
            view, session = service.open(view, position, reader)
            shape = session.case.shape[-2:]
            mask = np.zeros(shape, bool)
            mask[: 4 + 4 * position + (2 if reader == "dr b" else 0)] = True
            session, _ = service.app.scene(session)
            service.save(view, session, Submission(_payload(session, mask[None], threshold), reader))
            saved[(reader, position)] = mask
    view, session = service.open(service.start(str(worklist), label, "dr a"), 0, "dr a")
    session, _ = service.app.scene(session)
    later = np.zeros(shape, bool)
    later[:6] = True
    service.save(view, session, Submission(_payload(session, later[None], 0.3), "dr a"))  # dr a changes their mind
    saved[("dr a", 0)] = later

    agreements = {a.name: a for a in service.readers_agreement(view)}
    assert len(agreements) == 2
    names = sorted(p.name for p in worklist.iterdir() if not p.stem.endswith("_mask"))
    for position, name in enumerate(names[:2]):
        a, b = saved[("dr a", position)], saved[("dr b", position)]
        found = agreements[name]
        assert found.readers == ("dr a", "dr b")
        assert found.dice == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert agreements[names[0]].thresholds == (pytest.approx(0.3), pytest.approx(0.5))
    assert agreements[names[0]].threshold_spread == pytest.approx(0.2)


def test_the_summary_uses_the_maps_the_session_showed(service, reference, monkeypatch):
    _, worklist = reference
    label = next(iter(service.app.catalogue.choices))
    view = service.start(str(worklist), label, "dr lead")
    for position in range(3):
        view, session = service.open(view, position, "dr lead")
        heatmap = session.run.result.heatmap[0]
        _save(service, view, session, heatmap >= np.quantile(heatmap, 0.8), float(np.quantile(heatmap, 0.8)))
    scored = TuningService(service.app).summary(view, Criterion("dice"), resamples=20)  # no maps kept: scores

    def never(*_):
        raise AssertionError("the summary scored a case the session had shown")

    monkeypatch.setattr("anomascope.app.review.tuning_session.score_case", never)
    kept = service.summary(view, Criterion("dice"), resamples=20)
    assert (kept.readers.threshold, kept.readers.figure) == (scored.readers.threshold, scored.readers.figure)
    assert (kept.truth.threshold, kept.truth.figure) == (scored.truth.threshold, scored.truth.figure)
    # Past its budget the oldest map goes.
    small = TuningService(service.app).shown
    small.budget = heatmap.nbytes
    small.put(label, session.case, session.run.result.heatmap)
    small.put("other", session.case, session.run.result.heatmap)
    assert small.get(label, session.case) is None and small.get("other", session.case) is not None


def _heatmap_file(app: ReviewApp, described: dict) -> np.ndarray:
    import nibabel as nib

    url = described["heatmap"]["url"]
    token = described.get("preview") or described["token"]
    return np.asarray(nib.load(app.volumes.root / token / url.rsplit("/", 1)[-1]).dataobj)


def test_the_next_case_is_previewed_without_storing_and_the_step_shows_the_same(service, reference):
    """Issue 33.3: the page loads the next case while the reader works on this one. The preview stores
    nothing (no case, no run, no audit until the reader steps), and the scene the step then makes shows the
    same volumes (same `content`, same map) at the same threshold."""
    from sqlalchemy import func, select

    from anomascope.storage.models import AuditEvent, Case, InferenceRun

    _, worklist = reference
    app = service.app
    label = next(iter(app.catalogue.choices))
    view, first = service.open(service.start(str(worklist), label, "dr lead"), 0, "dr lead")

    def stored() -> tuple[int, int, int]:
        with app.db.transaction() as s:
            return tuple(
                s.scalar(select(func.count()).select_from(table)) for table in (Case, InferenceRun, AuditEvent)
            )

    before = stored()
    preview = service.preview(view)
    assert stored() == before
    assert preview["token"] is None and preview["title"].startswith(view.cases[1].name)

    view, second = service.step(view, +1, "dr lead")
    second, scene = app.scene(second)
    assert stored() != before  # stepping on is what opens and runs the case
    assert scene["content"] == preview["content"]
    assert scene["threshold"]["value"] == preview["threshold"]["value"]
    assert scene["threshold"]["presets"] == preview["threshold"]["presets"]
    np.testing.assert_array_equal(_heatmap_file(app, scene), _heatmap_file(app, preview))

    later = service.preview(view)
    assert later["content"] != preview["content"]
    assert not (app.volumes.root / preview["preview"]).exists()  # only the latest preview keeps its files
    view, _ = service.step(view, +1, "dr lead")
    assert service.preview(view) is None  # the last case: nothing comes after it
