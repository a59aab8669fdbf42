"""Review-app callbacks, without a browser."""
from __future__ import annotations

import numpy as np

from app.ui import open_case, render_slice
from tests.conftest import shipped_dicom


def test_open_case_shows_image_and_window():
    case, message, _slider, centre, width, image, info = open_case(shipped_dicom("MR_small.dcm"))
    assert case is not None and "MR" in message
    assert (centre, width) == (600.0, 1600.0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert info["shape"] == [1, 1, 64, 64]


def test_open_case_bad_file_is_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not an image")
    case, message, *_ = open_case(str(bad))
    assert case is None
    assert "Cannot open this file" in message and "photo.png" in message


def test_window_changes_rendering():
    case, *_ = open_case(shipped_dicom("CT_small.dcm"))
    narrow = render_slice(case, 0, 40, 80)
    wide = render_slice(case, 0, 40, 2000)
    assert not np.array_equal(narrow, wide)


def test_app_builds():
    from app.ui import build_app

    assert build_app() is not None
