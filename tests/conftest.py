"""Shared fixtures: small DICOM/NIfTI/PNG files written on the fly with the real libraries."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get("ANOMASCOPE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_dicom(array: np.ndarray, photometric: str = "MONOCHROME2", sop_class: str = CT_IMAGE, **tags) -> Dataset:
    """A minimal valid DICOM dataset holding `array` ((H, W), (F, H, W) or (..., 3) for RGB)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.PatientID = "TEST"
    bits = 8 if array.dtype == np.uint8 else 16
    ds.set_pixel_data(array, photometric_interpretation=photometric, bits_stored=bits)
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def write_dicom(path, ds: Dataset):
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def dicom_writer(tmp_path):
    def write(name, array, **kwargs):
        return write_dicom(tmp_path / name, make_dicom(array, **kwargs))

    return write


def shipped_dicom(name: str) -> str:
    """A test file that ships inside pydicom (never downloaded)."""
    path = pydicom.data.get_testdata_file(name, download=False)
    assert path is not None, f"{name} no longer ships with pydicom; pick another shipped file"
    return path


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """An empty database: SQLite always; PostgreSQL where ANOMASCOPE_TEST_POSTGRES_URL names a server
    (CI starts one with .ci/postgres.sh)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'anomascope.sqlite'}"
    _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL
