"""Saving the reader's mask and the saved versions: `save` stores exactly the mask the viewer sends back, as
the next version of the case's annotation; an earlier version can be put on screen or outlined over the
mask on screen; every saved annotation can be exported."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, replace

import numpy as np

from anomascope.app.dicom_export import rescored
from anomascope.app.export import export
from anomascope.app.review.scene import Scene, viewer_spacing
from anomascope.app.review.session import MaskVersion, ReviewError, ReviewSession, shows_saved, version_of
from anomascope.app.viewer import MaskPayloadError, mask_outline, pack_mask, read_payload, write_volume
from anomascope.engine.io import Case
from anomascope.storage import save_annotation

EXPORT_KEEP_S = 600  # the page hands an export to the browser at once; the copy here is kept this long


@dataclass(frozen=True)
class Submission:
    """What the reader sends with a save: the viewer's mask payload, the reader's name, a label and a note
    (optional), and whether they ticked that they read the model warning."""

    payload: str
    reader: str
    label: str = ""
    note: str = ""
    acknowledged: bool = False


class Annotations(Scene):
    """The saved versions on screen and over it (written beside the scene's files, `Scene`), saving the mask the
    viewer sends (its threshold checked against the run's read-out, `Runs`), and export."""

    def show_version(self, session: ReviewSession, version: int) -> ReviewSession:
        """Put an earlier (or the latest) saved version on screen; saving corrects the same lineage."""
        return replace(session, saved=version_of(session, version), token=None)

    def comparison(self, session: ReviewSession, version: int | None) -> dict:
        """A saved version for the viewer to outline over the mask on screen (and to measure their
        overlap against, as the reader edits); {} clears the comparison."""
        if version is None:
            return {}
        case, token = session.opened_case, session.scene_token
        picked = version_of(session, version)
        folder = self._scene_folder(session)
        path = write_volume(
            folder / f"version-{version}.nii.gz",
            mask_outline(picked.mask).astype(np.float32),
            viewer_spacing(case),
        )
        return {
            "token": token,
            "version": version,
            "annotation_id": picked.annotation_id,
            "url": self.volumes.url(path),
            "mask": pack_mask(picked.mask),
        }

    @staticmethod
    def mask_source(session: ReviewSession) -> str:
        """Where the mask on screen came from, and what saving it makes."""
        if session.saved is None:
            return ""
        latest = session.versions[-1].version
        if shows_saved(session):
            return (
                f"Showing saved version {session.saved.version} of {latest} "
                f"(annotation {session.saved.annotation_id}); saving makes version {latest + 1}."
            )
        return (
            f"Showing the thresholded map of this run; saved version {latest} stays in History, "
            f"and saving makes version {latest + 1}."
        )

    def save(
        self, session: ReviewSession, submission: Submission, tuning: tuple[int, int] | None = None
    ) -> tuple[ReviewSession, str]:
        """Store the mask the viewer sent as the next version of this case's annotation, in one transaction;
        with `tuning` (session id, worklist position) it is also that tuning session's entry for the case."""
        case, token = session.opened_case, session.scene_token
        reader = submission.reader
        if not reader or not reader.strip():
            raise ReviewError("enter the reader's name before saving")
        if session.warnings and not submission.acknowledged:
            raise ReviewError("read the model warning beside the result and tick that you did before saving")
        slices, _, rows, cols = case.shape
        try:
            sent = read_payload(submission.payload, token, (slices, rows, cols))
        except MaskPayloadError as exc:
            raise ReviewError(str(exc)) from exc
        threshold, how = self._recorded_threshold(session, sent.threshold, sent.threshold_method)
        run_id = session.run.run_id if session.run else session.saved.run_id if session.saved else None
        mask = sent.mask if slices > 1 else sent.mask[0]
        annotation = save_annotation(
            self.db,
            case_id=session.opened_case_id,
            run_id=run_id,
            mask=mask,
            author=reader,
            label=submission.label or None,
            note=submission.note or None,
            corrects=session.saved.lineage if session.saved else None,
            threshold=threshold,
            threshold_method=how,
            tuning=tuning,
        )
        # save_annotation has read the stored mask back as `sent.mask` in its transaction.
        version = MaskVersion(
            annotation.id,
            annotation.lineage,
            annotation.version,
            run_id,
            sent.mask,
            threshold,
            how,
        )
        saved = replace(session, saved=version, versions=[*session.versions, version])
        area = area_text(case, sent.mask)
        return saved, (
            f"Saved annotation {annotation.id} (version {annotation.version}) by {reader.strip()}: "
            f"{area}, "
            + (f"threshold {threshold:.4g} ({how})" if threshold is not None else "drawn by hand (no method run)")
            + (", with edits" if sent.edited else "")
            + (f"; the mask came from {session.shown_run.label}" if session.second is not None else "")
            + "."
        )

    def _recorded_threshold(
        self, session: ReviewSession, value: float | None, how: str
    ) -> tuple[float | None, str | None]:
        """The threshold a save records and how it was chosen, checked against the run the mask belongs to:
        the viewer's word alone once recorded another case's threshold (a viewer that kept it across cases).
        With a run on screen it is one of the run's presets at its own value, or a manual value (within the
        map's range, for a method with maps); on a reopened annotation with no map, the saved version's own."""
        saved = session.saved if shows_saved(session) else None
        run = session.run
        if run is None:
            if saved is None:  # drawn by hand before any run: a manual annotation
                if value is not None:
                    raise ReviewError(_stale_threshold(value, how, "no method has run on it"))
                return None, None
            if value is not None and not _same_threshold((value, how), (saved.threshold, saved.threshold_method)):
                raise ReviewError(_stale_threshold(value, how, "no map is on screen"))
            return saved.threshold, saved.threshold_method
        if value is None or not math.isfinite(value):
            raise ReviewError(_stale_threshold(value, how, f"{run.label}'s map is on screen"))
        if saved is not None and _same_threshold((value, how), (saved.threshold, saved.threshold_method)):
            return value, how
        if how == "manual" and run.image_level:
            return value, how  # a cut-off on image scores: above them all flags none, below them all flags all
        if how == "manual":
            low, high = self.threshold_range(run)
            slack = (high - low) * 1e-5  # the number box shows six significant digits
            if low - slack <= value <= high + slack:
                return value, how
            raise ReviewError(
                _stale_threshold(value, how, f"{run.label}'s map on screen runs from {low:.4g} to {high:.4g}")
            )
        offered = {**run.presets, run.threshold_method: run.threshold}
        if how in offered and math.isclose(value, offered[how], rel_tol=1e-9):
            return value, how
        said = f"{how} is {offered[how]:.4g} for {run.label}" if how in offered else f"{run.label} offers no {how}"
        raise ReviewError(_stale_threshold(value, how, said))

    def export_file(self, fmt: str) -> str:
        """One file to download (a zip when there are several); exports older than EXPORT_KEEP_S go."""
        self.exports.sweep(EXPORT_KEEP_S)
        _, out = self.exports.new_scene()
        heatmap = rescored(self.catalogue, self.device) if fmt == "dicom-pm" else None
        paths = export(self.db, out / "files", fmt, heatmap=heatmap)
        if not paths:
            raise ReviewError("nothing to export yet: no annotations are saved")
        if len(paths) == 1:
            return str(paths[0])
        archive = out / f"annotations-{fmt}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for path in paths:
                zf.write(path, path.name)
        return str(archive)


def _same_threshold(a: tuple[float | None, str | None], b: tuple[float | None, str | None]) -> bool:
    (value, how), (other, other_how) = a, b
    if value is None or other is None:
        same_value = value is other
    else:
        same_value = math.isclose(value, other, rel_tol=1e-9)
    return same_value and (how or "manual") == (other_how or "manual")


def _stale_threshold(value: float | None, how: str, why: str) -> str:
    shown = "no threshold" if value is None else f"threshold {value:.4g} ({how})"
    return (
        f"the viewer sent {shown}, which is not this image's: {why}. Nothing was saved; "
        "open the case again (or press Run) and save again"
    )


def area_text(case: Case, mask: np.ndarray) -> str:
    count = int(mask.sum())
    if case.spacing is None:
        return f"{count} px" if case.shape[0] == 1 else f"{count} voxels"
    row, col = case.spacing
    if case.shape[0] == 1:
        return f"{count} px = {count * row * col:.1f} mm²"
    return f"{count} voxels = {count * row * col * (case.slice_spacing or 1.0):.1f} mm³"
