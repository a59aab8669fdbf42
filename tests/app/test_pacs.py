"""The PACS round trip over DICOMweb, against a real Orthanc with its DICOMweb plugin (.ci/orthanc.sh; set
ANOMASCOPE_TEST_DICOMWEB_URL to its /dicom-web root): series stored on the PACS are found (QIDO-RS), opened
through the page's code path (WADO-RS), scored, corrected and saved, and their Segmentation and Parametric
Map sent back (STOW-RS), queried again, fetched and compared with what was saved and shown."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from anomascope.app.cli import EXIT_BAD_INPUT, main, pacs_of
from anomascope.app.pacs import PASSWORD_VARIABLE, TOKEN_VARIABLE, URL_VARIABLE, USER_VARIABLE, Pacs, PacsError
from anomascope.app.review.annotations import Submission
from anomascope.app.review.session import ReviewError
from anomascope.app.review.tuning_session import TuningService
from anomascope.engine.io import load_case, load_dicom_sources
from anomascope.storage import AuditEvent, case_history, decode_mask
from tests.app.test_dicom_export import SOURCES, choice, oblique_series, read_back, source_of, source_position
from tests.app.test_ui import _payload
from tests.conftest import shipped_dicom

DICOMWEB_URL = os.environ.get("ANOMASCOPE_TEST_DICOMWEB_URL")
CREDENTIALS = ("anomascope", "anomascope")  # the account .ci/orthanc.sh gives its Orthanc
CLOSED = "http://127.0.0.1:9/dicom-web"  # the discard port: nothing listens there
needs_pacs = pytest.mark.skipif(
    not DICOMWEB_URL, reason="no PACS to test against: .ci/orthanc.sh starts one, ANOMASCOPE_TEST_DICOMWEB_URL names it"
)


def test_the_pacs_is_tested_in_ci():
    """CI must exercise a real PACS, not skip it silently."""
    if os.environ.get("CI"):
        assert DICOMWEB_URL, "CI runs without ANOMASCOPE_TEST_DICOMWEB_URL: .ci/run should start Orthanc"


@pytest.fixture
def pacs() -> Pacs:
    return Pacs(DICOMWEB_URL, *CREDENTIALS)


def files_of(path: Path) -> list[Path]:
    return sorted(path.glob("*.dcm")) if path.is_dir() else [path]


def scored_and_saved(app, session, mask_seed: int = 1) -> tuple:
    """Run lgg-ppii on the open case, save a varied mask (one slice empty); the session, mask and map."""
    session, _ = app.scene(app.run(session, choice(app, "lgg-ppii"), "dr"))
    slices, _, rows, cols = session.case.shape
    mask = np.random.default_rng(mask_seed).random((slices, rows, cols)) > 0.7
    mask[slices // 2] = False
    shown = _payload(session, mask, session.run.threshold, session.run.threshold_method)
    session, _ = app.save(session, Submission(shown, "Dr^Reader", "lesion", acknowledged=True))
    return session, mask, session.run.result.heatmap


def fetched(pacs: Pacs, study: str, sop_instance_uid: str) -> pydicom.Dataset:
    """An instance queried again by its UID (QIDO-RS), then fetched (WADO-RS)."""
    [found] = pacs.client.search_for_instances(study, search_filters={"SOPInstanceUID": sop_instance_uid})
    series = pydicom.Dataset.from_json(found).SeriesInstanceUID
    return pacs.client.retrieve_instance(study, series, sop_instance_uid)


def sent_uids(app, annotation_id: int) -> list[str]:
    with app.db.sessions() as s:
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == "send_to_pacs")).all()
    assert event.target == f"annotation:{annotation_id}"
    return event.details["sop_instance_uids"]


@needs_pacs
@pytest.mark.parametrize("kind", SOURCES)
def test_a_series_from_the_pacs_goes_back_as_the_saved_segmentation_and_the_map_shown(app, pacs, tmp_path, kind):
    path = source_of(kind, tmp_path)
    sources = load_dicom_sources(path)
    study, series = sources[0].StudyInstanceUID, sources[0].SeriesInstanceUID
    pacs.store(files_of(path))
    app.pacs = pacs
    found = app.pacs_studies("compressed" if kind == "ct-slice" else "test pat")  # part of the patient's name
    assert study in [row[-1] for row in found]
    assert series in [uid for _, uid in app.pacs_series(study)]

    session = app.open_pacs_series(study, series, "dr")
    np.testing.assert_array_equal(session.case.pixels, load_case(path).pixels)
    session, mask, heatmap = scored_and_saved(app, session)
    said = app.send_to_pacs(session, "dr")
    assert f"annotation {session.saved.annotation_id}" in said and "Parametric Map" in said

    seg_uid, pm_uid = sent_uids(app, session.saved.annotation_id)
    segmentation = hd.seg.Segmentation.from_dataset(fetched(pacs, study, seg_uid))
    np.testing.assert_array_equal(read_back(segmentation, sources, len(mask)), mask)
    assert segmentation.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"

    parametric_map = fetched(pacs, study, pm_uid)
    frames = parametric_map.pixel_array.reshape(-1, *heatmap.shape[-2:])
    order = [source_position(frame, sources) for frame in parametric_map.PerFrameFunctionalGroupsSequence]
    values = np.empty_like(frames)
    values[order] = frames
    np.testing.assert_allclose(values, heatmap, rtol=0, atol=1e-6)


@needs_pacs
def test_a_series_that_holds_no_image_is_refused_in_one_sentence(app, pacs, tmp_path):
    path = oblique_series(tmp_path / "series")
    pacs.store(files_of(path))
    app.pacs = pacs
    session, _, _ = scored_and_saved(app, app.open_file(path, "dr"))
    app.send_to_pacs(session, "dr")
    seg_uid, _ = sent_uids(app, session.saved.annotation_id)
    study = load_dicom_sources(path)[0].StudyInstanceUID
    seg_series = fetched(pacs, study, seg_uid).SeriesInstanceUID
    with pytest.raises(PacsError, match=f"series {seg_series} holds a Segmentation, not images to score"):
        app.open_pacs_series(study, seg_series, "dr")


@needs_pacs
def test_a_refused_store_is_one_sentence_and_the_annotation_stays_saved(app, pacs, tmp_path):
    path = oblique_series(tmp_path / "series")
    pacs.store(files_of(path))
    study = load_dicom_sources(path)[0].StudyInstanceUID
    app.pacs = pacs
    series = load_dicom_sources(path)[0].SeriesInstanceUID
    session, mask, _ = scored_and_saved(app, app.open_pacs_series(study, series, "dr"))
    app.pacs = Pacs(DICOMWEB_URL, "anomascope", "not the password")
    with pytest.raises(PacsError, match="could not store the objects: .* HTTP 401 .*credentials are missing or wrong"):
        app.send_to_pacs(session, "dr")
    [kept] = case_history(app.db, session.case_id).annotations
    np.testing.assert_array_equal(decode_mask(kept.mask_shape, kept.mask_data).reshape(mask.shape), mask)
    modalities = [pydicom.Dataset.from_json(s).Modality for s in pacs.client.search_for_series(study)]
    assert modalities == ["CT"]  # nothing half-sent
    # Sent again once the PACS takes it: the annotation saved before is what arrives.
    app.pacs = pacs
    app.send_to_pacs(session, "dr")
    segmentation = hd.seg.Segmentation.from_dataset(fetched(pacs, study, sent_uids(app, kept.id)[0]))
    np.testing.assert_array_equal(read_back(segmentation, load_dicom_sources(path), len(mask)), mask)


@needs_pacs
def test_an_object_the_pacs_leaves_out_of_its_reply_is_a_refusal(pacs, tmp_path):
    ds = pydicom.dcmread(shipped_dicom("CT_small.dcm"))
    ds.StudyInstanceUID = ""  # Orthanc answers STOW for it with neither a stored nor a failed item
    ds.SOPInstanceUID = generate_uid()  # not CT_small's own, which is sent beside it below
    ds.save_as(tmp_path / "no-study.dcm")
    with pytest.raises(PacsError, match="did not store 1 of the 1 objects sent: " + ds.SOPInstanceUID):
        pacs.store([tmp_path / "no-study.dcm"])
    taken = pydicom.dcmread(shipped_dicom("CT_small.dcm"))
    with pytest.raises(PacsError, match="did not store 1 of the 2 objects sent") as refused:
        pacs.store([Path(shipped_dicom("CT_small.dcm")), tmp_path / "no-study.dcm"])
    assert refused.value.stored == [taken.SOPInstanceUID]  # what the PACS holds now, for the audit trail


@needs_pacs
def test_wrong_credentials_are_said_as_such():
    with pytest.raises(PacsError, match="could not search the studies: .* HTTP 401 .*credentials are missing or wrong"):
        Pacs(DICOMWEB_URL, "anomascope", "not the password").studies("x")


def test_an_unreachable_pacs_is_one_sentence_and_the_annotation_stays_saved(app, tmp_path):
    app.pacs = Pacs(CLOSED)
    with pytest.raises(PacsError, match=f"could not search the studies: the PACS at {CLOSED} cannot be reached"):
        app.pacs_studies("smith")
    session, mask, _ = scored_and_saved(app, app.open_file(shipped_dicom("CT_small.dcm"), "dr"))
    with pytest.raises(PacsError, match="could not store the objects: .* cannot be reached"):
        app.send_to_pacs(session, "dr")
    [kept] = case_history(app.db, session.case_id).annotations
    np.testing.assert_array_equal(decode_mask(kept.mask_shape, kept.mask_data).reshape(mask.shape), mask)


def test_sending_needs_a_pacs_and_a_saved_annotation(app):
    session = app.open_file(shipped_dicom("CT_small.dcm"), "dr")
    with pytest.raises(ReviewError, match="no PACS is configured"):
        app.send_to_pacs(session, "dr")
    app.pacs = Pacs(CLOSED)
    with pytest.raises(ReviewError, match="save the annotation first"):
        app.send_to_pacs(session, "dr")


def test_credentials_come_from_the_environment_never_the_address():
    with pytest.raises(PacsError, match="must not hold credentials"):
        Pacs("http://reader:secret@pacs.example/dicom-web")
    with pytest.raises(PacsError, match="is not an http:// or https:// URL"):
        Pacs("pacs.example/dicom-web")
    assert Pacs.from_environment(environ={}) is None
    basic = Pacs.from_environment(
        environ={URL_VARIABLE: "http://pacs.example/dicom-web/", USER_VARIABLE: "reader", PASSWORD_VARIABLE: "pw"}
    )
    assert (basic.url, basic.client._session.auth) == ("http://pacs.example/dicom-web", ("reader", "pw"))
    bearer = Pacs.from_environment("https://pacs.example/dicom-web", environ={TOKEN_VARIABLE: "t0k"})
    assert bearer.client._session.headers["Authorization"] == "Bearer t0k"


def test_serve_refuses_credentials_on_the_command_line(capsys):
    assert main(["serve", "--dicomweb", "http://reader:secret@pacs.example/dicom-web"]) == EXIT_BAD_INPUT
    assert "must not hold credentials" in capsys.readouterr().err


def test_serve_starts_when_the_pacs_does_not_answer_and_says_so(capsys):
    pacs = pacs_of(CLOSED)
    assert pacs is not None and pacs.url == CLOSED
    assert f"the PACS at {CLOSED} cannot be reached" in capsys.readouterr().err


@needs_pacs
def test_a_tuning_worklist_from_the_pacs_holds_its_image_series_fetched_when_reached(app, pacs, tmp_path):
    patient = f"Worklist^T{secrets.randbelow(10**8):08d}"  # this test's own patient, whatever the PACS holds
    path = oblique_series(tmp_path / "series")
    for file in files_of(path):
        ds = pydicom.dcmread(file)
        ds.PatientName, ds.PatientID = patient, patient.replace("^", "-")
        ds.save_as(file)
    pacs.store(files_of(path))
    app.pacs = pacs
    session, _, _ = scored_and_saved(app, app.open_file(path, "dr"))
    app.send_to_pacs(session, "dr")  # the study now holds a Segmentation and a Parametric Map series too
    study = load_dicom_sources(path)[0].StudyInstanceUID
    assert len(app.pacs_series(study)) == 3 and len(app.pacs_series(study, images_only=True)) == 1

    service = TuningService(app)
    view = service.start(f"dicomweb: {patient.replace('^', ' ')}", choice(app, "lgg-ppii"), "dr")
    [case] = view.cases  # the Parametric Map is left out by its SOP class: its modality is the source's
    assert case.group == patient.replace("^", "-") and case.name.startswith("Worklist T")
    assert case.case_id is None and case.series is not None and case.series[0] == study  # fetched when reached
    view, opened = service.open(view, 0, "dr")
    np.testing.assert_array_equal(opened.case.pixels, load_case(path).pixels)
    assert view.cases[0].case_id == opened.case_id  # fetched once: stepping back opens the stored case
    with pytest.raises(ReviewError, match="no cases to tune on"):
        TuningService(app).start("dicomweb: Nobody Here", choice(app, "lgg-ppii"), "dr")
    with pytest.raises(ReviewError, match="'dicomweb:' needs a patient name, ID or accession number"):
        TuningService(app).start("dicomweb:", choice(app, "lgg-ppii"), "dr")
