"""The link to the PACS: searching its studies and their series, opening a series as a case, and sending a
saved annotation back (with the Parametric Map of its run); each send is recorded."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from anomascope.app.dicom_export import SegmentationRefused, rescored, write_parametric_map, write_segmentation
from anomascope.app.pacs import Pacs, PacsError
from anomascope.app.review.cases import Cases
from anomascope.app.review.session import ReviewError, ReviewSession
from anomascope.engine.methods import registry
from anomascope.storage import annotations_for_export, record_sent


class PacsLink(Cases):
    """The PACS, where one is configured: its series open as uploaded files do (`Cases`)."""

    def pacs_studies(self, text: str) -> list[list]:
        """The PACS's studies matching `text`, as the page's table rows (the study UID last)."""
        return [
            [s.patient_name, s.patient_id, s.date, s.description, s.modalities, s.accession, s.study_uid]
            for s in self._pacs().studies(text)
        ]

    def pacs_series(self, study_uid: str, images_only: bool = False) -> list[tuple[str, str]]:
        """(title, series UID) of each series of the study; with `images_only`, of those whose modality and
        SOP class do not rule out images (one query a series; nothing is fetched)."""
        pacs = self._pacs()
        return [
            (s.title, s.series_uid)
            for s in pacs.series(study_uid)
            if not images_only or pacs.holds_images(s, study_uid)
        ]

    def open_pacs_series(self, study_uid: str, series_uid: str, reader: str = "") -> ReviewSession:
        """A series fetched from the PACS, opened as an uploaded file or folder; the fetched copy is removed
        once the case store holds it."""
        if not study_uid or not series_uid:
            raise ReviewError("pick a study and one of its series in the PACS search first")
        folder = Path(tempfile.mkdtemp(prefix="anomascope-pacs-"))
        try:
            # The folder's name becomes the case's source name; a UID is digits and dots, anything else goes.
            name = "".join(c for c in series_uid if c.isdigit() or c == ".").strip(".") or "series"
            return self.open_file(self._pacs().fetch_series(study_uid, series_uid, folder / name), reader)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def send_to_pacs(self, session: ReviewSession, reader: str) -> str:
        """Store the saved annotation on screen on the PACS as a Segmentation, with the Parametric Map of the
        run it came from when that run made a map. The annotation stays saved here whatever the PACS says."""
        pacs = self._pacs()
        if session.case is None or session.saved is None:
            raise ReviewError("save the annotation first: the PACS receives a saved version, never an unsaved mask")
        annotation_id = session.saved.annotation_id
        (row,) = annotations_for_export(self.db, annotation_id=annotation_id)
        method = registry().methods.get(row.run.method) if row.run is not None else None
        with tempfile.TemporaryDirectory(prefix="anomascope-stow-") as folder:
            try:
                paths = [write_segmentation(row, Path(folder))]
                if method is not None and method.maps:
                    paths.append(write_parametric_map(row, Path(folder), self._run_map(session)))
            except SegmentationRefused as exc:
                raise ReviewError(f"annotation {annotation_id} cannot be sent to the PACS: {exc}") from exc
            try:
                stored = pacs.store(paths)
            except PacsError as exc:
                if exc.stored:  # the PACS holds these now: the audit trail must say so
                    self._record_sent(annotation_id, reader, pacs, exc.stored)
                raise
        self._record_sent(annotation_id, reader, pacs, stored)
        sent = "its Segmentation"
        if len(paths) > 1:
            sent += f" and the Parametric Map of run {row.annotation.run_id}"
        return f"Sent annotation {annotation_id} (version {row.annotation.version}) to {pacs.url}: {sent}."

    def _record_sent(self, annotation_id: int, reader: str, pacs: Pacs, stored: list[str]) -> None:
        record_sent(
            self.db,
            annotation_id=annotation_id,
            actor=reader.strip() or "anonymous",
            destination=pacs.url,
            sop_instance_uids=stored,
        )

    def _run_map(self, session: ReviewSession):
        """The map of an export row's run: the one on screen when it is that run, else made again."""
        remade = rescored(self.catalogue, self.device)

        def heatmap(row) -> np.ndarray:
            shown = session.run
            if shown is not None and shown.run_id == row.run.id and shown.result.heatmap is not None:
                return shown.result.heatmap
            return remade(row)

        return heatmap

    def _pacs(self) -> Pacs:
        if self.pacs is None:
            raise ReviewError("no PACS is configured: start the page with `anomascope serve --dicomweb URL`")
        return self.pacs
