"""anomascope.engine.io: every supported format into one Case, and one clear error for everything else."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, generate_uid

from anomascope.engine.io import ImageReadError, ReadLimits, load_case, nifti_slices, volume_from_slices
from tests.conftest import make_dicom, shipped_dicom, write_dicom

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


# --- photos ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("L", 1), ("RGBA", 3), ("P", 3)])
def test_png_modes(tmp_path, mode, channels):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode)
    path = tmp_path / "photo.png"
    image.save(path)
    case = load_case(path)
    assert case.shape == (1, channels, 20, 30)
    assert case.pixels.dtype == np.float32
    assert case.window == (127.5, 255.0)
    if mode == "RGB":
        np.testing.assert_array_equal(case.pixels[0], rgb.transpose(2, 0, 1))


def test_png_16bit_keeps_full_range(tmp_path):
    values = np.linspace(0, 65535, 40 * 50).reshape(40, 50).astype(np.uint16)
    path = tmp_path / "xray16.png"
    Image.fromarray(values).save(path)
    case = load_case(path)
    assert case.shape == (1, 1, 40, 50)
    assert case.pixels.max() == 65535 and case.metadata["bit_depth"] == 16
    assert case.modality == "OT"


def test_jpeg_rgb_and_exif_rotation(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[:, :10] = 255
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    case = load_case(path)
    assert case.format == "jpeg" and case.modality == "XC"
    assert case.shape == (1, 3, 20, 10)  # shown upright: width and height swapped
    assert case.metadata["exif_rotated"] is True


# --- DICOM shipped with pydicom ----------------------------------------------------------------


def test_ct_small_rescaled_to_hounsfield():
    case = load_case(shipped_dicom("CT_small.dcm"))
    assert case.format == "dicom" and case.modality == "CT"
    assert case.shape == (1, 1, 128, 128)
    assert case.spacing == pytest.approx((0.661468, 0.661468))
    # RescaleIntercept -1024 and slope 1: stored 0 becomes air at about -1024 HU.
    import pydicom

    ds = pydicom.dcmread(shipped_dicom("CT_small.dcm"))
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(case.pixels[0, 0], expected)


def test_mr_small_window_from_header():
    case = load_case(shipped_dicom("MR_small.dcm"))
    assert case.modality == "MR"
    assert case.window == (600.0, 1600.0)


def test_multiframe_shipped():
    case = load_case(shipped_dicom("rtdose.dcm"))
    assert case.shape[0] == 15 and case.shape[1] == 1


def test_multiframe_rgb_ultrasound_ybr():
    case = load_case(shipped_dicom("examples_ybr_color.dcm"))
    assert case.shape == (30, 3, 240, 320)
    assert case.modality == "US"


@pytest.mark.parametrize(
    "name", ["SC_rgb_jpeg_dcmtk.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "JPEGLSNearLossless_16.dcm"]
)
def test_compressed_transfer_syntaxes_with_installed_handlers(name):
    case = load_case(shipped_dicom(name))
    assert case.pixels.size > 0 and np.isfinite(case.pixels).all()


def test_jpeg2000_lossless_matches_uncompressed():
    a = load_case(shipped_dicom("MR_small.dcm")).pixels
    b = load_case(shipped_dicom("MR_small_jp2klossless.dcm")).pixels
    np.testing.assert_array_equal(a, b)


def test_dicom_without_pixel_data():
    with pytest.raises(ImageReadError, match=r"rtplan\.dcm: no pixel data"):
        load_case(shipped_dicom("rtplan.dcm"))


# --- DICOM written by the tests ------------------------------------------------------------


def test_monochrome1_is_inverted_with_its_window(dicom_writer):
    array = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)
    path = dicom_writer("cr.dcm", array, photometric="MONOCHROME1", WindowCenter=100, WindowWidth=50, Modality="CR")
    case = load_case(path)
    lo, hi = 0, 255
    np.testing.assert_allclose(case.pixels[0, 0], (lo + hi) - array)
    assert case.window == (lo + hi - 100, 50.0)
    assert case.modality == "CR"


def test_rescale_slope_intercept_and_multi_valued_window(dicom_writer):
    array = np.full((8, 8), 100, np.uint16)
    path = dicom_writer(
        "ct.dcm", array, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=[40, 300], WindowWidth=[400, 1500]
    )
    case = load_case(path)
    assert np.all(case.pixels == 2 * 100 - 1024)
    assert case.window == (40.0, 400.0)


def test_a_projection_images_pixel_size_is_taken_at_the_patient(dicom_writer):
    array = np.zeros((8, 8), np.uint16)
    detector = {"Modality": "DX", "ImagerPixelSpacing": [0.2, 0.25]}
    magnified = dicom_writer("dx.dcm", array, **detector, EstimatedRadiographicMagnificationFactor=1.25)
    assert load_case(magnified).spacing == pytest.approx((0.16, 0.2))
    assert load_case(dicom_writer("plain.dcm", array, **detector)).spacing == pytest.approx((0.2, 0.25))
    calibrated = dicom_writer(
        "calibrated.dcm", array, **detector, EstimatedRadiographicMagnificationFactor=1.25, PixelSpacing=[0.15, 0.15]
    )
    assert load_case(calibrated).spacing == pytest.approx((0.15, 0.15))  # PixelSpacing is at the patient already


def test_voi_lut_sequence_gives_window(tmp_path):
    ds = make_dicom(np.zeros((8, 8), np.uint16))
    item = Dataset()
    item.LUTDescriptor = [256, 100, 8]
    item.add_new(0x00283006, "US", list(range(256)))  # LUTData
    ds.VOILUTSequence = [item]
    case = load_case(write_dicom(tmp_path / "voi.dcm", ds))
    assert case.window == (228.0, 256.0)


def test_written_multiframe(dicom_writer):
    frames = np.stack([np.full((6, 7), i, np.uint16) for i in range(5)])
    ds = make_dicom(frames)
    assert int(ds.NumberOfFrames) == 5
    path = dicom_writer("mf.dcm", frames)
    case = load_case(path)
    assert case.shape == (5, 1, 6, 7)
    assert [float(case.pixels[i].mean()) for i in range(5)] == [0, 1, 2, 3, 4]


def test_rgb_dicom(dicom_writer):
    rgb = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    path = dicom_writer("rgb.dcm", rgb, photometric="RGB", sop_class="1.2.840.10008.5.1.4.1.1.7")
    case = load_case(path)
    assert case.shape == (1, 3, 9, 11)
    np.testing.assert_array_equal(case.pixels[0], rgb.transpose(2, 0, 1))


def _series(tmp_path: Path, n: int = 5, series_uid: str | None = None, folder: str = "series") -> Path:
    root = tmp_path / folder
    root.mkdir(exist_ok=True)
    uid = series_uid or generate_uid()
    order = [3, 0, 4, 1, 2][:n] if n == 5 else list(range(n))
    for i in order:
        ds = make_dicom(
            np.full((4, 6), 10 * i, np.uint16),
            SeriesInstanceUID=uid,
            ImagePositionPatient=[0.0, 0.0, 2.5 * i],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            InstanceNumber=n - i,
            PixelSpacing=[0.5, 0.7],
        )
        # File names deliberately out of spatial order.
        write_dicom(root / f"IM{(7 * i) % n:04d}.dcm", ds)
    return root


def test_series_folder_sorted_by_position(tmp_path):
    root = _series(tmp_path)
    (root / "README.txt").write_text("not an image")  # exports carry such files; they are skipped
    case = load_case(root)
    assert case.format == "dicom-series"
    assert case.shape == (5, 1, 4, 6)
    assert [float(case.pixels[i].mean()) for i in range(5)] == [0, 10, 20, 30, 40]
    assert case.slice_spacing == pytest.approx(2.5)
    assert case.spacing == (0.5, 0.7)
    assert case.metadata["skipped_files"] == ["README.txt"]


def test_series_zip(tmp_path):
    root = _series(tmp_path)
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in root.iterdir():
            zf.write(path, f"DICOM/{path.name}")
    case = load_case(archive)
    assert case.shape == (5, 1, 4, 6)
    assert [float(case.pixels[i].mean()) for i in range(5)] == [0, 10, 20, 30, 40]


def test_mixed_series_refused(tmp_path):
    root = _series(tmp_path, n=3, folder="mixed")
    other = make_dicom(
        np.zeros((4, 6), np.uint16), ImagePositionPatient=[0, 0, 9.0], ImageOrientationPatient=[1, 0, 0, 0, 1, 0]
    )
    write_dicom(root / "other.dcm", other)
    with pytest.raises(ImageReadError, match="mixed: mixed series: 2 different SeriesInstanceUIDs"):
        load_case(root)


def test_unsupported_transfer_syntax(tmp_path):
    ds = make_dicom(np.zeros((8, 8), np.uint8))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # video in DICOM: no pip-installable decoder
    ds.PixelData = encapsulate([b"\x00" * 20])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "jxl.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match=r"jxl\.dcm: unsupported transfer syntax"):
        load_case(path)


# --- NIfTI ----------------------------------------------------------------------------------


def test_nibabel_anatomical_3d():
    case = load_case(NIBABEL_DATA / "anatomical.nii")
    image = nib.as_closest_canonical(nib.load(NIBABEL_DATA / "anatomical.nii"))
    x, y, z = image.shape
    assert case.format == "nifti" and case.shape == (z, 1, y, x)
    assert case.spacing is not None and case.slice_spacing is not None


def test_nibabel_example_4d_gz():
    case = load_case(NIBABEL_DATA / "example4d.nii.gz")
    assert case.shape == (24, 2, 96, 128)
    assert case.metadata["fourth_axis"] == "channels"


def test_nifti_reoriented_to_canonical(tmp_path):
    volume = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS storage: x runs right-to-left
    nib.save(nib.Nifti1Image(volume, flipped), tmp_path / "las.nii.gz")
    nib.save(nib.Nifti1Image(volume[::-1].copy(), np.eye(4)), tmp_path / "ras.nii.gz")
    np.testing.assert_array_equal(load_case(tmp_path / "las.nii.gz").pixels, load_case(tmp_path / "ras.nii.gz").pixels)


def test_nifti_2d(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((7, 9), np.int16), np.eye(4)), tmp_path / "flat.nii")
    assert load_case(tmp_path / "flat.nii").shape == (1, 1, 9, 7)


def test_nifti_slice_mapping_round_trips():
    volume = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    slices = nifti_slices(volume)[:, 0]
    np.testing.assert_array_equal(volume_from_slices(slices), volume)


def test_nifti_5d_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 2, 2), np.float32), np.eye(4)), tmp_path / "five.nii")
    with pytest.raises(ImageReadError, match="five.nii: unsupported NIfTI dimensionality"):
        load_case(tmp_path / "five.nii")


# --- bad input: one clear error, never a traceback ---------------------------------------------


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(src: Path, dst: Path, keep: float) -> Path:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


BAD_INPUTS = {
    "empty.png": lambda d: _write(d / "empty.png", b""),
    "random.dcm": lambda d: _write(d / "random.dcm", np.random.default_rng(0).bytes(4096)),
    "random.bin": lambda d: _write(d / "random.bin", np.random.default_rng(1).bytes(4096)),
    "text.png": lambda d: _write(d / "text.png", b"this is not a picture"),
    "truncated.png": lambda d: _png_truncated(d),
    "truncated.jpg": lambda d: _jpeg_truncated(d),
    "truncated.dcm": lambda d: _truncate(shipped_dicom("CT_small.dcm"), d / "truncated.dcm", 0.6),
    "header_only.dcm": lambda d: _truncate(shipped_dicom("CT_small.dcm"), d / "header_only.dcm", 0.05),
    "truncated.nii.gz": lambda d: _truncate(NIBABEL_DATA / "example4d.nii.gz", d / "truncated.nii.gz", 0.5),
    "truncated.nii": lambda d: _truncate(NIBABEL_DATA / "anatomical.nii", d / "truncated.nii", 0.5),
    "broken.zip": lambda d: _write(d / "broken.zip", b"PK\x03\x04" + b"\x00" * 40),
    "empty_folder": lambda d: (d / "empty_folder").mkdir() or d / "empty_folder",
    "missing.png": lambda d: d / "missing.png",
}


def _png_truncated(d: Path) -> Path:
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / "full.png")
    return _truncate(d / "full.png", d / "truncated.png", 0.5)


def _jpeg_truncated(d: Path) -> Path:
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / "full.jpg")
    return _truncate(d / "full.jpg", d / "truncated.jpg", 0.3)


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gives_one_named_error(tmp_path, name):
    path = BAD_INPUTS[name](tmp_path)
    with pytest.raises(ImageReadError) as info:
        load_case(path)
    message = str(info.value)
    assert message.startswith(f"{Path(path).name}: ")
    assert "\n" not in message and len(message) < 400


def test_too_large_is_refused_before_decoding(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="big.png: too large"):
        load_case(tmp_path / "big.png", ReadLimits(max_voxels=5000))
    with pytest.raises(ImageReadError, match="too large"):
        load_case(shipped_dicom("CT_small.dcm"), ReadLimits(max_voxels=1000))
    with pytest.raises(ImageReadError, match="too large"):
        load_case(NIBABEL_DATA / "anatomical.nii", ReadLimits(max_voxels=1000))
    with pytest.raises(ImageReadError, match="CT_small.dcm: too large: the file holds 39,"):
        load_case(shipped_dicom("CT_small.dcm"), ReadLimits(max_bytes=1000))


def test_wrong_extension_is_read_by_content(tmp_path):
    """A PNG saved as .dcm is still a PNG: content decides, the extension does not mislead."""
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "scan.png")
    (tmp_path / "scan.dcm").write_bytes((tmp_path / "scan.png").read_bytes())
    assert load_case(tmp_path / "scan.dcm").format == "png"


def test_gzip_that_is_not_nifti(tmp_path):
    (tmp_path / "notes.nii.gz").write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(ImageReadError, match="notes.nii.gz: not a readable NIfTI"):
        load_case(tmp_path / "notes.nii.gz")


def test_summary_is_json_ready():
    summary = load_case(shipped_dicom("CT_small.dcm")).summary()
    assert set(summary) >= {"format", "modality", "shape", "spacing", "window"}
    json.dumps(summary)


def test_dicom_series_mask_geometry_matches_slice_positions(tmp_path):
    from anomascope.engine.io.geometry import mask_volume

    case = load_case(_series(tmp_path))
    mask = np.zeros((5, 4, 6), bool)
    volume, affine = mask_volume(case.format, case.metadata, list(case.spacing), case.slice_spacing, mask)
    assert volume.shape == (6, 4, 5)
    for k, position in enumerate(case.metadata["image_positions"]):
        ras = affine @ np.array([0, 0, k, 1.0])
        np.testing.assert_allclose(ras[:3], [-position[0], -position[1], position[2]])
    # one column step moves 0.7 mm along the row direction (x in LPS, -x in RAS)
    np.testing.assert_allclose(affine[:3, 0], [-0.7, 0, 0])
