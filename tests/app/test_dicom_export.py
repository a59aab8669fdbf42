"""DICOM out: a saved annotation of a DICOM case as a DICOM Segmentation, read back with highdicom and
compared voxel for voxel with the saved mask on the source geometry: a single CT slice, an oblique
multi-slice series whose files are out of order, and a multi-frame object."""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from anomascope.app.cli import main
from anomascope.app.dicom_export import NOT_EXPORTED, PM_NOT_EXPORTED, rescored
from anomascope.app.export import export
from anomascope.app.review.annotations import Submission
from anomascope.engine.io import ImageReadError, load_dicom_sources
from tests.app.test_ui import SAMPLE, _payload
from tests.conftest import make_dicom, shipped_dicom, write_dicom


def oblique_series(folder: Path, slices: int = 5, complete: bool = True) -> Path:
    """A CT series tilted 30 degrees about the x axis, its files written in shuffled order and numbered
    against their position, so that only sorting along the slice normal puts them right. Not `complete`:
    anonymised, without the patient and study attributes that a Segmentation copies (no name, patient ID,
    birth date, sex, accession number, study ID, date or time)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0 if complete else 1)  # other pixels: another case
    angle = np.deg2rad(30)
    row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(angle), np.sin(angle)])
    normal = np.cross(row, col)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    order = list(range(slices))
    random.Random(0).shuffle(order)
    for k in order:
        pixels = rng.normal(100, 20, (24, 32)).clip(0, 4000).astype(np.uint16)
        ds = make_dicom(
            pixels,
            SeriesInstanceUID=series,
            StudyInstanceUID=study,
            FrameOfReferenceUID=frame,
            # Decimal strings of at most 16 characters, as DICOM's DS allows (scanners round the same way).
            ImageOrientationPatient=[round(float(v), 8) for v in (*row, *col)],
            ImagePositionPatient=[round(float(v), 6) for v in 2.5 * k * normal + np.array([10.0, -5.0, 3.0])],
            PixelSpacing=[0.7, 0.7],
            SliceThickness=2.5,
            InstanceNumber=slices - k,
            PatientName="Test^Patient",
            StudyDate="20260101",
            StudyTime="120000",
            SeriesNumber=3,
        )
        if complete:
            ds.update({"PatientBirthDate": "", "PatientSex": "O", "AccessionNumber": "", "StudyID": "1"})
            ds.ReferringPhysicianName = ""
        else:
            for keyword in ("PatientName", "PatientID", "StudyDate", "StudyTime"):
                delattr(ds, keyword)
        write_dicom(folder / f"file{order.index(k)}.dcm", ds)
    return folder


def multi_frame(folder: Path) -> Path:
    """The oblique series converted by highdicom into one legacy-converted enhanced CT object."""
    sources = load_dicom_sources(oblique_series(folder / "series"))
    converted = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=sources,
        series_instance_uid=hd.UID(),
        series_number=4,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    path = folder / "multi-frame.dcm"
    converted.save_as(path)
    return path


SOURCES = ["ct-slice", "oblique-series", "multi-frame"]


def source_of(kind: str, tmp_path: Path) -> Path:
    if kind == "ct-slice":
        return Path(shipped_dicom("CT_small.dcm"))
    if kind == "oblique-series":
        return oblique_series(tmp_path / "series")
    return multi_frame(tmp_path / "mf")


def choice(app, bundle: str) -> str:
    return next(label for label, picked in app.catalogue.choices.items() if picked.bundle.path.name == bundle)


def saved_mask(app, path: Path, bundle: str, label: str = "lesion") -> np.ndarray:
    """Open `path`, run the shipped `bundle`, save a mask of varied content on every slice (one slice
    empty), and return it."""
    return saved_run(app, path, bundle, label)[0]


def saved_run(app, path: Path, bundle: str, label: str = "lesion") -> tuple[np.ndarray, np.ndarray | None]:
    """As `saved_mask`; also the map the reader saw."""
    session = app.open_file(path, "dr")
    session, _ = app.scene(app.run(session, choice(app, bundle), "dr"))
    slices, _, rows, cols = session.case.shape
    mask = np.random.default_rng(1).random((slices, rows, cols)) > 0.7
    mask[slices // 2] = False
    app.save(
        session,
        Submission(
            _payload(session, mask, session.run.threshold, session.run.threshold_method),
            "Dr Reader",
            label,
            acknowledged=True,
        ),
    )
    return mask, session.run.result.heatmap


def read_back(segmentation: hd.seg.Segmentation, sources: list[pydicom.Dataset], slices: int) -> np.ndarray:
    """The Segmentation's mask on the source geometry, slice by slice in the sources' order."""
    if len(sources) == 1 and int(sources[0].get("NumberOfFrames", 1) or 1) > 1:
        pixels = segmentation.get_pixels_by_source_frame(
            sources[0].SOPInstanceUID,
            list(range(1, slices + 1)),
            segment_numbers=[1],
            assert_missing_frames_are_empty=True,
        )
    else:
        pixels = segmentation.get_pixels_by_source_instance(
            [ds.SOPInstanceUID for ds in sources], segment_numbers=[1], assert_missing_frames_are_empty=True
        )
    return pixels[..., 0].astype(bool)


@pytest.mark.parametrize("kind", SOURCES)
def test_the_segmentation_holds_the_saved_mask_on_the_source_geometry(app, tmp_path, kind):
    path = source_of(kind, tmp_path)
    mask = saved_mask(app, path, "lgg-ppii")
    [written] = export(app.db, tmp_path / "out", "dicom-seg")
    segmentation = hd.seg.segread(written)
    sources = load_dicom_sources(path)
    np.testing.assert_array_equal(read_back(segmentation, sources, len(mask)), mask)

    # It refers to the source study, series and frame of reference, and says who and what made it.
    first = sources[0]
    assert segmentation.StudyInstanceUID == first.StudyInstanceUID
    assert segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert segmentation.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert str(segmentation.ContentCreatorName) == "Dr Reader"
    segment = segmentation.SegmentSequence[0]
    assert segment.SegmentLabel == "lesion" and segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    bundle = app.catalogue.choices[choice(app, "lgg-ppii")].bundle
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("anomascope ppii", bundle.id)


@pytest.mark.parametrize("kind", SOURCES)
def test_the_parametric_map_holds_the_map_the_reader_saw(app, tmp_path, kind):
    path = source_of(kind, tmp_path)
    _, heatmap = saved_run(app, path, "lgg-ppii")
    [written] = export(app.db, tmp_path / "out", "dicom-pm", heatmap=rescored(app.catalogue, app.device))
    parametric_map = pydicom.dcmread(written)
    sources = load_dicom_sources(path)
    frames = parametric_map.pixel_array.reshape(-1, *heatmap.shape[-2:])
    # Each frame names the source instance (and frame) it lies on: put the frames back in the sources' order.
    order = [source_position(frame, sources) for frame in parametric_map.PerFrameFunctionalGroupsSequence]
    values = np.empty_like(frames)
    values[order] = frames
    np.testing.assert_allclose(values, heatmap, rtol=0, atol=1e-6)
    mapping = parametric_map.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert (mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept) == (1.0, 0.0)
    assert mapping.DoubleFloatRealWorldValueLastValueMapped == pytest.approx(float(heatmap.max()))
    first = sources[0]
    assert parametric_map.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert parametric_map.FrameOfReferenceUID == first.FrameOfReferenceUID
    if shutil.which("dciodvfy"):
        said = subprocess.run(["dciodvfy", str(written)], capture_output=True, text=True, check=False).stderr
        assert "ParametricMap" in said and "Error" not in said


def source_position(frame: pydicom.Dataset, sources: list[pydicom.Dataset]) -> int:
    """The slice of the case a derived object's frame lies on, from its source image reference."""
    source = frame.DerivationImageSequence[0].SourceImageSequence[0]
    instances = [ds.SOPInstanceUID for ds in sources]
    if len(instances) == 1:  # a multi-frame source: the referenced frame number
        return int(source.ReferencedFrameNumber) - 1 if "ReferencedFrameNumber" in source else 0
    return instances.index(source.ReferencedSOPInstanceUID)


def test_a_drawn_mask_is_manual_and_a_photo_is_listed_with_the_reason(app, tmp_path):
    # DIA makes no map: the mask is the reader's drawing.
    saved_mask(app, Path(shipped_dicom("CT_small.dcm")), "chest-xray-dia", label="")
    saved_mask(app, SAMPLE, "ham10000-denoiser")
    written = export(app.db, tmp_path / "out", "dicom-seg")
    assert [p.name for p in written] == ["annotation-1-v1-seg.dcm", NOT_EXPORTED]
    segment = hd.seg.segread(written[0]).SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "MANUAL" and segment.SegmentLabel == "anomaly"
    assert "SegmentationAlgorithmIdentificationSequence" not in segment
    with written[1].open() as f:
        [refused] = list(csv.DictReader(f))
    assert refused["source_name"] == SAMPLE.name
    assert "has no DICOM study or series to refer to" in refused["reason"]
    with pytest.raises(ImageReadError, match="a JPEG image, not DICOM"):
        load_dicom_sources(SAMPLE)


def test_the_page_exports_the_segmentation_the_reader_saved(app):
    mask = saved_mask(app, Path(shipped_dicom("CT_small.dcm")), "lgg-ppii")
    segmentation = hd.seg.segread(app.export_file("dicom-seg"))  # one file: handed over as it is
    np.testing.assert_array_equal(read_back(segmentation, load_dicom_sources(shipped_dicom("CT_small.dcm")), 1), mask)


def test_the_command_line_writes_the_segmentations(app, tmp_path, capsys):
    saved_mask(app, Path(shipped_dicom("CT_small.dcm")), "lgg-ppii")
    out = tmp_path / "out"
    assert main(["export", "--format", "dicom-seg", "--db", app.db.url, "--out", str(out)]) == 0
    assert '"files": 1' in capsys.readouterr().out
    assert hd.seg.segread(out / "annotation-1-v1-seg.dcm").SegmentSequence[0].SegmentLabel == "lesion"


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy is not installed")
@pytest.mark.parametrize("kind", SOURCES)
def test_dciodvfy_finds_no_errors(app, tmp_path, kind):
    saved_mask(app, source_of(kind, tmp_path), "lgg-ppii")
    [written] = export(app.db, tmp_path / "out", "dicom-seg")
    report = subprocess.run(["dciodvfy", str(written)], capture_output=True, text=True, check=False)
    said = report.stdout + report.stderr
    assert "Segmentation" in said  # it recognised the object and checked it against the Segmentation IOD
    assert "Error" not in said


def test_an_anonymised_series_exports_its_segmentation_and_map(app, tmp_path):
    """Issue 33: a source without a birth date (or any other type 2 patient or study attribute) refused both."""
    folder = oblique_series(tmp_path / "anonymised", complete=False)
    mask, heatmap = saved_run(app, folder, "lgg-ppii")
    sources = load_dicom_sources(folder)
    assert all("PatientBirthDate" not in ds and "PatientName" not in ds for ds in sources)
    written = export(app.db, tmp_path / "out", "dicom-seg")
    assert [p.name for p in written] == ["annotation-1-v1-seg.dcm"]
    segmentation = hd.seg.segread(written[0])
    np.testing.assert_array_equal(read_back(segmentation, sources, len(sources)), mask)
    assert segmentation.PatientBirthDate == "" and segmentation.PatientName == "" and segmentation.PatientSex == ""
    [pm_path] = export(app.db, tmp_path / "pm", "dicom-pm", heatmap=rescored(app.catalogue, app.device))
    parametric_map = pydicom.dcmread(pm_path)
    assert parametric_map.StudyInstanceUID == sources[0].StudyInstanceUID and parametric_map.AccessionNumber == ""
    assert parametric_map.pixel_array.shape == heatmap.shape


def test_maps_that_cannot_be_exported_are_listed_with_the_reason(app, tmp_path):
    saved_mask(app, Path(shipped_dicom("CT_small.dcm")), "chest-xray-dia")  # image level: no map
    saved_mask(app, SAMPLE, "ham10000-denoiser")  # a photo
    written = export(app.db, tmp_path / "out", "dicom-pm", heatmap=rescored(app.catalogue, app.device))
    assert [p.name for p in written] == [PM_NOT_EXPORTED]
    with written[0].open() as f:
        reasons = {row["run_id"]: row["reason"] for row in csv.DictReader(f)}
    assert "makes no map" in reasons["1"] and "has no DICOM study or series" in reasons["2"]
    with pytest.raises(ValueError, match="needs the bundles"):
        export(app.db, tmp_path / "again", "dicom-pm")


def test_the_command_line_writes_the_parametric_maps(app, tmp_path, capsys):
    _, heatmap = saved_run(app, Path(shipped_dicom("CT_small.dcm")), "lgg-ppii")
    out = tmp_path / "out"
    command = ["export", "--format", "dicom-pm", "--device", "cpu", "--db", app.db.url, "--out", str(out)]
    assert main(command) == 0
    assert '"files": 1' in capsys.readouterr().out
    np.testing.assert_allclose(pydicom.dcmread(out / "run-1-pm.dcm").pixel_array, heatmap[0], atol=1e-6)
