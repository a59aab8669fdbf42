"""Opening cases and storing them: the case store joins engine cases and storage records (the app is the only
layer that sees both)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from anomascope.app.review.services import Services
from anomascope.app.review.session import MaskVersion, ReviewError, ReviewSession
from anomascope.engine.io import Case, load_case
from anomascope.storage import Database, add_case, case_history, case_summaries, decode_mask
from anomascope.storage.models import Case as CaseRecord


def content_hash(case: Case) -> str:
    """Identity of the image: its pixels and its geometry. The same pixels in another container are the
    same case; the same pixels with another spacing or modality are another (a JPEG copy of a DICOM
    slice has no spacing, and its masks have no area in mm²)."""
    digest = hashlib.sha256(
        json.dumps(
            [list(case.shape), case.modality, case.summary()["spacing"], case.summary()["slice_spacing"]]
        ).encode()
    )
    digest.update(case.pixels.tobytes())
    return digest.hexdigest()


def register_case(db: Database, case: Case, actor: str) -> CaseRecord:
    name = case.source.replace("\\", "/").rsplit("/", 1)[-1]
    metadata = dict(case.metadata, slice_spacing=case.slice_spacing, window=list(case.window))
    return add_case(
        db,
        content_hash=content_hash(case),
        source_name=name,
        format=case.format,
        modality=case.modality,
        shape=list(case.shape),
        spacing=None if case.spacing is None else list(case.spacing),
        metadata=metadata,
        actor=actor,
    )


class Cases(Services):
    """Opening a case, which stores it (an uploaded file or folder, or a case stored before), and the stored
    cases: the worklist and a case's history."""

    def open_file(self, path: str | Path, reader: str = "") -> ReviewSession:
        path = Path(path)
        case = load_case(path)  # ImageReadError carries the one-sentence reason
        stored = self.cases_dir / content_hash(case)[:16] / path.name
        stored.parent.mkdir(parents=True, exist_ok=True)
        if not stored.exists():
            if path.is_dir():
                shutil.copytree(path, stored)
            else:
                shutil.copy2(path, stored)
        case.metadata["stored_path"] = str(stored)
        record = register_case(self.db, case, actor=reader.strip() or "anonymous")
        return self._latest(case, record.id)

    def open_folder(self, paths: list[str], reader: str = "") -> ReviewSession:
        """The files of an uploaded folder, as one series; the gathered copy is removed once read."""
        folder = gather_series(paths)
        try:
            return self.open_file(folder, reader)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def open_saved(self, case_id: int | None) -> ReviewSession:
        if case_id is None:
            raise ReviewError("pick a case in the worklist first")
        history = case_history(self.db, case_id)
        stored = history.case.metadata_json.get("stored_path")
        if not stored or not Path(stored).exists():
            raise ReviewError(
                f"case {case_id} ({history.case.source_name}): its image file is no longer in the data folder"
            )
        case = load_case(stored)
        case.metadata["stored_path"] = stored
        return self._latest(case, case_id)

    def _latest(self, case: Case, case_id: int) -> ReviewSession:
        """The opened case showing its most recent annotation, with every version of its lineage to compare."""
        session = ReviewSession(case=case, case_id=case_id)
        annotations = case_history(self.db, case_id).annotations
        if annotations:
            lineage = annotations[-1].lineage
            session.versions = [self._version(a, case) for a in annotations if a.lineage == lineage]
            session.saved = session.versions[-1]
        return session

    @staticmethod
    def _version(annotation, case: Case) -> MaskVersion:
        mask = decode_mask(annotation.mask_shape, annotation.mask_data)
        full = np.zeros((case.shape[0], *case.shape[-2:]), dtype=bool)
        if annotation.slice_index is None:
            full[:] = mask.reshape(-1, *case.shape[-2:])
        else:  # saved by an earlier page, one slice at a time
            full[annotation.slice_index] = mask.reshape(case.shape[-2:])
        return MaskVersion(
            annotation.id,
            annotation.lineage,
            annotation.version,
            annotation.run_id,
            full,
            annotation.threshold,
            annotation.threshold_method,
        )

    def worklist(self) -> list[list]:
        return [
            [
                record.id,
                record.source_name,
                record.modality,
                "×".join(map(str, record.shape)),
                n_runs,
                n_notes,
                record.created.strftime("%Y-%m-%d %H:%M"),
            ]
            for record, n_runs, n_notes in case_summaries(self.db)
        ]

    def history(self, session: ReviewSession) -> list[list]:
        if session.case_id is None:
            return []
        history = case_history(self.db, session.case_id)
        rows = [
            [
                "run",
                r.id,
                r.created.strftime("%Y-%m-%d %H:%M:%S"),
                f"{r.method} ({r.bundle_id})",
                f"image score {r.image_score:.4g}" if r.image_score is not None else "",
                "",
            ]
            for r in history.runs
        ]
        rows += [
            [
                "annotation",
                a.id,
                a.created.strftime("%Y-%m-%d %H:%M:%S"),
                a.author,
                f"v{a.version} of {a.lineage[:8]}, run {a.run_id}"
                + (f", threshold {a.threshold:.4g} [{a.threshold_method}]" if a.threshold is not None else ""),
                " · ".join(x for x in (a.label, a.note) if x),
            ]
            for a in history.annotations
        ]
        return sorted(rows, key=lambda row: row[2])


def gather_series(paths: list[str]) -> Path:
    """Files of an uploaded folder (each in its own temporary upload folder) into one series folder."""
    folder = Path(tempfile.mkdtemp(prefix="anomascope-series-"))
    for index, path in enumerate(paths):
        shutil.copy2(path, folder / f"{index:05d}_{Path(path).name}")
    return folder
