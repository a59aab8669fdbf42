"""`anomascope infer` over an archive: the inputs of folders and list files, split into shards that may run
at once on other processes or machines and share one output folder, and a results table per shard.

Every shard sees the whole input list and takes every n-th input, so the shards of one list cover
each input exactly once whatever order they run in, and each input's output stem is decided from the whole
list (two inputs named alike get distinct stems in every shard).

A shard's table is `results/csv/shard-<i>-of-<n>.csv`, one row appended and flushed per input, so a killed
run leaves every finished row; `results/parquet/shard-<i>-of-<n>.parquet` is written when the shard ends.
A restarted shard skips the inputs its table says were done with the same settings (bundle, read-out,
precision, threshold) and tries the failed ones again; other settings score them again. Read all shards at
once with `pyarrow.parquet.read_table(OUT / "results" / "parquet")` or `pandas.read_parquet` of that folder.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from anomascope.app.inference_outputs import real_path, unique_stem
from anomascope.engine.io.formats import looks_like_dicom

INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz", ".zip")
COLUMNS = ["file", "status", "score", "seconds", "outputs", "error", "stem", "shard", "settings"]
NUMBERS = ("score", "seconds")
RESULTS = "results"


class ArchiveError(ValueError):
    """The inputs or the shard cannot be worked out; the message says which and why."""


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`, counting from 0: the inputs whose position in the sorted list is index mod
    count."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ArchiveError(f"--shard {text!r}: expected I/N, e.g. 0/4 for the first of four shards") from None
        if count < 1 or not 0 <= index < count:
            raise ArchiveError(
                f"--shard {text}: I counts from 0 and must be below N (0/{max(count, 1)} to "
                f"{max(count, 1) - 1}/{max(count, 1)})"
            )
        return cls(index, count)

    def within(self, processes: int, rank: int) -> Shard:
        """This shard split again among `processes` (accelerate's processes): this process's part, every
        `processes`-th of the shard's own inputs."""
        return Shard(self.index + self.count * rank, self.count * processes)

    def take(self, inputs: list[Path]) -> list[Path]:
        return inputs[self.index :: self.count]

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


def gather_inputs(paths: Iterable[str], list_file: Path | None = None) -> list[Path]:
    """Every input named: files as they are; a folder whose first file is DICOM as one series; any other
    folder walked, in name order, for the files and series it holds; then the lines of `list_file` (blank
    lines and lines starting with # left out). In the order named, each input once: every shard given the
    same arguments sees the same list."""
    named = [Path(p) for p in paths]
    if list_file is not None:
        try:
            lines = list_file.read_text().splitlines()
        except OSError as exc:
            raise ArchiveError(f"--list {list_file}: cannot be read ({exc.strerror or exc})") from exc
        named += [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not named:
        raise ArchiveError("no inputs: name files or folders, or give --list FILE")
    found: dict[Path, None] = {}  # ordered: the first mention of an input keeps its place
    for path in named:
        try:
            walked = _inputs_in(path) if path.is_dir() and not is_series_folder(path) else [path]
        except OSError as exc:
            raise ArchiveError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        if not walked:
            raise ArchiveError(f"{path}: no images or DICOM series in this folder")
        found.update(dict.fromkeys(walked))
    return list(found)


def is_series_folder(folder: Path) -> bool:
    """A folder is one DICOM series when its first file (by name, hidden ones left out) is DICOM."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        with entry.open("rb") as f:
            return looks_like_dicom(f.read(132)) or entry.name.lower().endswith(".dcm")
    return False


def _inputs_in(folder: Path) -> list[Path]:
    inputs = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            inputs += [entry] if is_series_folder(entry) else _inputs_in(entry)
        elif entry.name.lower().endswith(INPUT_SUFFIXES):
            inputs.append(entry)
    return inputs


def assign_stems(out: Path, inputs: list[Path]) -> dict[Path, str]:
    """Each input's output stem, decided over the whole list (the same in every shard)."""
    taken: set[str] = set()
    return {path: unique_stem(out, path, taken) for path in inputs}


class ResultsTable:
    """One shard's rows: read back on a restart, appended and flushed as inputs finish. `settings` says
    what a row's outputs were made with; only rows made with the same settings count as done, in any
    shard's table, so that a run with another shard or process count does not score them again."""

    def __init__(self, out: Path, shard: Shard, settings: dict):
        for kind in ("csv", "parquet"):
            (out / RESULTS / kind).mkdir(parents=True, exist_ok=True)
        self.csv_path = out / RESULTS / "csv" / f"{shard.name}.csv"
        self.parquet_path = out / RESULTS / "parquet" / f"{shard.name}.parquet"
        self.shard, self.settings = shard, json.dumps(settings, sort_keys=True)
        # What any shard's table (this layout or an earlier one) says was done with these settings.
        self.done = {
            row["file"]
            for table in (out / RESULTS / "csv").glob("*.csv")
            for row in _read(table)
            if row["status"] == "ok" and row["settings"] == self.settings
        }
        # This table keeps its rows done with these settings; the others are scored again and appended.
        self.rows = [
            row for row in _read(self.csv_path) if row["file"] in self.done and row["settings"] == self.settings
        ]
        self._write_all()

    def add(self, file: Path, stem: str, summary: dict | None = None, error: str | None = None) -> None:
        row = {
            "file": real_path(file),
            "status": "ok" if error is None else "failed",
            "score": "" if summary is None else summary["image_score"],
            "seconds": "" if summary is None else summary["seconds"],
            "outputs": "" if summary is None else json.dumps(outputs_of(summary)),
            "error": error or "",
            "stem": stem,
            "shard": self.shard.name,
            "settings": self.settings,
        }
        self.rows.append(row)
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def write_parquet(self) -> None:
        """The rows as Parquet, score and seconds as numbers (empty for a failed input)."""
        arrays = {
            name: pa.array([_number(row[name]) for row in self.rows], pa.float64())
            if name in NUMBERS
            else pa.array([row[name] for row in self.rows], pa.string())
            for name in COLUMNS
        }
        pq.write_table(pa.table(arrays), self.parquet_path)

    def _write_all(self) -> None:
        """The kept rows, written to a new file that then replaces the old one: a kill never loses them."""
        fresh = self.csv_path.with_suffix(".tmp")
        with fresh.open("w", newline="") as f:
            table = csv.DictWriter(f, COLUMNS)
            table.writeheader()
            table.writerows(self.rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(fresh, self.csv_path)


def _read(table: Path) -> list[dict]:
    if not table.exists():
        return []
    with table.open(newline="") as f:
        return list(csv.DictReader(f))


def outputs_of(summary: dict) -> list[str]:
    """The files `infer` wrote for one input, by name."""
    stem = summary["stem"]
    names = [f"{stem}.json"]
    if summary.get("heatmap_shape"):
        names += [f"{stem}_heatmap.npy", f"{stem}_overlay.png"]
    names += [summary[key] for key in ("restoration", "uncertainty", "mask", "mask_png") if summary.get(key)]
    return names


def _number(value) -> float | None:
    return None if value in ("", None) else float(value)
