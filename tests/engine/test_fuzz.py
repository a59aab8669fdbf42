"""Fuzzing the readers: any mutation of a valid file is read as a finite image or refused with one
ImageReadError sentence, never another exception. Short in the default run; `pytest -m slow` runs long."""

from __future__ import annotations

import gzip
import io
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from anomascope.engine.io import ImageReadError, ReadLimits, load_bytes
from tests.conftest import make_dicom, shipped_dicom

# Small limits: a mutation that claims a huge image is refused instead of filling the test machine.
LIMITS = ReadLimits(max_voxels=2**22, max_bytes=2**26, max_files=64)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 32), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _nifti() -> bytes:
    image = nib.Nifti1Image(np.random.default_rng(2).random((6, 7, 5)).astype(np.float32), np.diag([1.0, 1.2, 2.0, 1]))
    return image.to_bytes()


def _dicom_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k in range(2):
            ds = make_dicom(np.full((8, 9), k, np.uint16), SeriesInstanceUID="1.2.3", InstanceNumber=k + 1)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            archive.writestr(f"IM{k}.dcm", out.getvalue())
    return buffer.getvalue()


SEEDS = {
    "photo.png": _png(),
    "photo.jpg": _jpeg(),
    "ct.dcm": Path(shipped_dicom("CT_small.dcm")).read_bytes(),
    "volume.nii": _nifti(),
    "volume.nii.gz": gzip.compress(_nifti()),
    "series.zip": _dicom_zip(),
}


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A seed file with a few flipped, overwritten, cut or inserted bytes (headers are where readers break)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 6))):
        at = (
            draw(st.integers(0, len(data) - 1))
            if draw(st.booleans())
            else draw(st.integers(0, min(600, len(data) - 1)))
        )
        kind = draw(st.sampled_from(["flip", "overwrite", "cut", "insert"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 4096))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        if not data:
            break
    return name, bytes(data)


def _read_or_refuse(name: str, data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom and PIL warn about what they repair
        try:
            case = load_bytes(name, data, LIMITS)
        except ImageReadError as exc:
            assert str(exc).startswith(f"{name}: ") and "\n" not in str(exc)
            return
    assert case.pixels.ndim == 4 and case.pixels.dtype == np.float32 and np.isfinite(case.pixels).all()


COMMON = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=150, derandomize=True, **COMMON)
@given(mutated())
def test_mutated_files_are_read_or_refused_in_one_sentence(sample):
    _read_or_refuse(*sample)


@pytest.mark.slow
@settings(max_examples=5000, **COMMON)
@given(mutated())
def test_mutated_files_long_run(sample):
    _read_or_refuse(*sample)
