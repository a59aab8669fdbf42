"""The worklists a tuning session steps through (a folder of images an administrator offers, a prepared
split, the database's cases or the PACS's image series), and a reader's place in one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from anomascope.app.review.app import ReviewApp
from anomascope.app.review.session import ReviewError
from anomascope.app.review.uploads import inside
from anomascope.engine.data import list_images
from anomascope.storage import list_cases

DATABASE = "database"  # the worklist source that means "the cases already in the database"
PACS_SOURCE = "dicomweb:"  # "dicomweb:TEXT": the image series of the PACS's studies that TEXT finds
ROOTS_ENV = "ANOMASCOPE_WORKLIST_ROOTS"  # the server folders offered as worklists, os.pathsep-separated


@dataclass(frozen=True)
class WorklistCase:
    """One case of a worklist: a file to open, a case already in the database, or a PACS series (fetched
    when the reader reaches it), and its ground-truth mask where the worklist has one."""

    name: str
    group: str  # cases of one group (a patient) are resampled together in the summary's bands
    path: Path | None = None
    case_id: int | None = None  # the database case; a PACS series has one once it was opened
    truth: Path | None = None
    series: tuple[str, str] | None = None  # (study UID, series UID) on the PACS


@dataclass(frozen=True)
class TuningView:
    """A reader's tuning session as the page holds it: which session, which method, where in the worklist."""

    session_id: int
    uid: str
    label: str  # the catalogue choice
    readout: str
    bundle_id: str
    cases: tuple[WorklistCase, ...]
    position: int = 0
    case_id: int | None = None  # the database case open at `position`: a save of it is the session's entry

    @property
    def progress(self) -> str:
        return f"case {self.position + 1} of {len(self.cases)}: {self.cases[self.position].name}"


def worklist_roots() -> tuple[Path, ...]:
    """The server folders an administrator offers as tuning worklists (with what lies under them), from
    ANOMASCOPE_WORKLIST_ROOTS; none unless listed."""
    return tuple(Path(entry) for entry in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if entry.strip())


def worklist(source: str, app: ReviewApp, folder_roots: Iterable[Path] = ()) -> list[WorklistCase]:
    """The cases of `source`: "database", "dicomweb:TEXT" (the image series of the PACS's studies that
    TEXT finds), a prepared split (its test images, with their ground truth), or a folder of images (with
    X_mask.png beside an image as its ground truth, where present) under one of `folder_roots`."""
    text = source.strip()
    if text == DATABASE:
        cases = [
            WorklistCase(record.source_name, str(record.id), case_id=record.id)
            for record in list_cases(app.db, limit=None)
        ]
    elif text.startswith(PACS_SOURCE):
        cases = _pacs_series(text.removeprefix(PACS_SOURCE).strip(), app)
    else:
        root = _offered(text, folder_roots)
        cases = _within(_files(root), root)
    if not cases:
        raise ReviewError(f"{source}: no cases to tune on")
    return cases


def _pacs_series(text: str, app: ReviewApp) -> list[WorklistCase]:
    """Every image series of the studies the PACS finds for `text` (patient name, ID or accession number,
    as the PACS panel searches). Nothing is fetched here: a series is fetched into the case store when the
    reader reaches it. Series that hold no image (the Segmentations and Parametric Maps sent back, reports)
    are left out by their modality and SOP class."""
    if not text:
        raise ReviewError(f"'{PACS_SOURCE}' needs a patient name, ID or accession number to search the PACS for")
    return [
        WorklistCase(f"{patient_name or patient_id}: {title}", patient_id or study_uid, series=(study_uid, series_uid))
        for patient_name, patient_id, *_, study_uid in app.pacs_studies(text)
        for title, series_uid in app.pacs_series(study_uid, images_only=True)
    ]


def _offered(folder: str, roots: Iterable[Path]) -> Path:
    """`folder` when it lies under one of `roots`, links followed; any other is refused before anything in
    it is read, since the reader names it and the server would open whatever it can read there."""
    real = Path(os.path.realpath(folder))
    offered = [Path(os.path.realpath(root)) for root in roots]
    if not offered:
        raise ReviewError(
            f"{folder}: server folders are not offered as tuning worklists here; an administrator offers them "
            f"by listing their roots in {ROOTS_ENV}"
        )
    if not any(real == root or inside(real, root) for root in offered):
        raise ReviewError(
            f"{folder}: not under the server folders offered as tuning worklists ({', '.join(map(str, offered))}); "
            f"an administrator offers it by adding its root to {ROOTS_ENV}"
        )
    return real


def _within(cases: list[WorklistCase], root: Path) -> list[WorklistCase]:
    """The cases, once none of their files is a link out of the offered folder (it would open what lies there)."""
    for case in cases:
        for path in (case.path, case.truth):
            if path is not None and not inside(path, root):
                raise ReviewError(f"{path}: a link out of the worklist folder {root}; links out of it are refused")
    return cases


def _files(root: Path) -> list[WorklistCase]:
    if not root.is_dir():
        raise ReviewError(f"{root}: no such folder (give a folder of images, a prepared split or '{DATABASE}')")
    test = root / "test"
    if test.is_dir():
        split_file = root / "split.json"
        groups = json.loads(split_file.read_text()).get("groups", {}) if split_file.exists() else {}
        cases = []
        for kind in sorted(p for p in test.iterdir() if p.is_dir()):
            for path in list_images(kind):
                truth = root / "ground_truth" / kind.name / f"{path.stem}_mask.png"
                group = groups.get(f"test/{kind.name}/{path.name}", path.name)
                cases.append(WorklistCase(path.name, group, path, truth=truth if truth.exists() else None))
        return cases
    images = [p for p in list_images(root) if not p.stem.endswith("_mask")]
    return [
        WorklistCase(p.name, p.stem, p, truth=mask if (mask := p.with_name(f"{p.stem}_mask.png")).exists() else None)
        for p in images
    ]
