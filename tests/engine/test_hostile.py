"""Hostile and odd files: each gets one sentence naming it and the reason, within bounded memory and
without blocking; the command line answers them with exit code 2."""

from __future__ import annotations

import builtins
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from anomascope.app.cli import main
from anomascope.engine.io import ImageReadError, ReadLimits, load_case
from anomascope.engine.io.case import printable
from anomascope.engine.io.limits import LimitsError
from tests.cli import anomascope
from tests.hostile import CORPUS, _series_with

# Allocations larger than this mean a size was trusted before it was checked (the corpus claims GiBs).
PEAK_BYTES = 64 * 2**20


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_file_is_refused_by_name_within_bounded_memory(tmp_path, name):
    hostile = CORPUS[name]
    path = hostile.write(tmp_path)
    tracemalloc.start()
    try:
        if hostile.reason is None:
            case = load_case(path)
        else:
            with pytest.raises(ImageReadError) as info:
                load_case(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{name}: {peak / 2**20:.0f} MiB allocated"
    if hostile.reason is None:  # a series with one odd file: read, the odd file skipped unread
        assert hostile.skipped in case.metadata["skipped_files"] and np.isfinite(case.pixels).all()
        return
    message = str(info.value)
    assert message.startswith(f"{printable(path.name)}: ") and "\n" not in message, message
    assert hostile.reason.lower() in message.lower(), message


@pytest.mark.parametrize("name", sorted(n for n, h in CORPUS.items() if h.reason))
def test_inspect_answers_hostile_files_with_exit_2_and_one_line(tmp_path, capsys, name):
    path = CORPUS[name].write(tmp_path)
    assert main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"anomascope inspect: {printable(path.name)}: ")


@pytest.mark.parametrize(
    "name",
    ["dicom text in NumberOfFrames", "png claiming 169 megapixels", "nifti header claiming 300^3 float64, no data"],
)
def test_the_libraries_warnings_do_not_split_the_sentence(tmp_path, name):
    """As a user runs it: pydicom, PIL and nibabel warn or log about such files on stderr."""
    path = CORPUS[name].write(tmp_path)
    result = anomascope("inspect", path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"anomascope inspect: {path.name}: ")


@pytest.mark.parametrize("name", ["series folder with links that loop (a -> b -> a)", "a link to itself"])
def test_a_link_that_loops_is_bad_input_without_a_traceback(tmp_path, name):
    """As a user runs it: Path.resolve raised RuntimeError on the loop, and inspect exited 1 with a traceback."""
    path = CORPUS[name].write(tmp_path)
    result = anomascope("inspect", path)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"anomascope inspect: {path.name}: ") and "a link that loops" in line, line


def test_unreadable_file_in_a_series_refuses_the_series_by_name(tmp_path, monkeypatch):
    series = _series_with(lambda folder: (folder / "IM9.dcm").write_bytes(b"\0" * 200), "series")(tmp_path)
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # chmod 0 would not stop root, who runs CI
        if Path(str(file)).name == "IM9.dcm":
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(ImageReadError, match=r"^series: IM9.dcm: cannot be read \(Permission denied\)$"):
        load_case(series)


def test_a_damaged_slice_refuses_the_series_instead_of_dropping_it(tmp_path):
    def damage(folder: Path) -> None:
        data = bytearray((folder / "IM2.dcm").read_bytes())
        (folder / "IM2.dcm").write_bytes(bytes(data[:-500]))

    with pytest.raises(ImageReadError, match=r"^series: IM2.dcm: truncated"):
        load_case(_series_with(damage, "series")(tmp_path))


def test_limits_are_configurable_from_the_environment(tmp_path, monkeypatch, capsys):
    from tests.conftest import shipped_dicom

    monkeypatch.setenv("ANOMASCOPE_MAX_VOXELS", "1000")
    with pytest.raises(ImageReadError, match="limit of 1,000 .ANOMASCOPE_MAX_VOXELS"):
        load_case(shipped_dicom("CT_small.dcm"))
    monkeypatch.setenv("ANOMASCOPE_MAX_VOXELS", "lots")
    assert main(["inspect", shipped_dicom("CT_small.dcm")]) == 2
    assert "ANOMASCOPE_MAX_VOXELS='lots' is not a whole number" in capsys.readouterr().err
    with pytest.raises(LimitsError):
        ReadLimits.from_env()
    monkeypatch.delenv("ANOMASCOPE_MAX_VOXELS")
    monkeypatch.setenv("ANOMASCOPE_MAX_FILES", "3")
    with pytest.raises(ImageReadError, match="too many files"):
        load_case(_series_with(lambda folder: None, "series")(tmp_path))


def test_rgb24_nifti_is_read_as_three_channels(tmp_path):
    rng = np.random.default_rng(0)
    channels = rng.integers(0, 256, (3, 6, 5), dtype=np.uint8)  # (channel, X, Y)
    voxels = np.zeros((6, 5), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    for index, name in enumerate("RGB"):
        voxels[name] = channels[index]
    nib.save(nib.Nifti1Image(voxels, np.eye(4)), tmp_path / "photo.nii")
    case = load_case(tmp_path / "photo.nii")
    assert case.shape == (1, 3, 5, 6) and case.window == (127.5, 255.0)
    # Display rows are Y from anterior (top) down, columns X from the patient's right: both flipped.
    np.testing.assert_array_equal(case.pixels[0], channels.transpose(0, 2, 1)[:, ::-1, ::-1].astype(np.float32))
