"""bench/device/travel_size.py: the bytes a device call sends, counted as the device tool counts them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bench_scripts import load_bench_script


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A repository with a tracked file, an untracked one git does not ignore, an ignored shared/ (which travels
    all the same), an ignored split and wheels."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/prepared\n/.whl/\n/shared/\n")
    write(tmp_path / "engine" / "tracked.py", 1000)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    write(tmp_path / "untracked.txt", 300)
    write(tmp_path / "shared" / "papers" / "p.pdf", 90)
    write(tmp_path / "prepared" / "lgg" / "train" / "a.png", 5000)
    write(tmp_path / "prepared" / "lgg" / "val" / "b.png", 2000)
    write(tmp_path / "prepared" / "lgg" / "test" / "c.png", 4000)
    write(tmp_path / ".whl" / "w.whl", 700)
    return tmp_path


def test_the_tree_and_each_carried_path_are_counted_once_and_what_is_not_carried_not_at_all(checkout):
    travel = load_bench_script("device/travel_size.py")
    tree = 1000 + 300 + 90 + len((checkout / ".gitignore").read_bytes())
    parts = travel.sizes(checkout, [".whl", "prepared/lgg/train", "prepared/lgg/val", "prepared/lgg"])
    # prepared/lgg after its train and val adds only test, which was not yet counted.
    assert parts == {
        "tree": tree,
        ".whl": 700,
        "prepared/lgg/train": 5000,
        "prepared/lgg/val": 2000,
        "prepared/lgg": 4000,
    }


def test_a_call_over_the_limit_exits_1_and_says_by_how_much(checkout, capsys):
    travel = load_bench_script("device/travel_size.py")
    tree = 1000 + 300 + 90 + len((checkout / ".gitignore").read_bytes())
    limit = tree + 5000 + 700
    assert travel.main(["--root", str(checkout), "--limit-bytes", str(limit), ".whl", "prepared/lgg/train"]) == 0
    assert "fits, 0.00 MB to spare" in capsys.readouterr().out
    assert travel.main(["--root", str(checkout), "--limit-bytes", str(limit), ".whl", "prepared/lgg"]) == 1
    assert "OVER by 0.01 MB" in capsys.readouterr().out
    assert travel.main(["--root", str(checkout), "prepared/nowhere"]) == 2
    assert "prepared/nowhere: no such file or folder" in capsys.readouterr().err
