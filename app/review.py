"""What the review page does, as plain functions over one `ReviewSession` per reader (no Gradio here),
so every callback is testable without a browser.

The session is replaced whole when a case is opened (or fails to open), so nothing of the previous
case survives. The browser viewer holds the threshold and the mask; `scene` tells it what to show and
`save` stores exactly the mask it sends back.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from anomascope.app.bundles import Catalogue
from anomascope.app.casestore import content_hash, register_case
from anomascope.app.dicom_export import SegmentationRefused, rescored, write_parametric_map, write_segmentation
from anomascope.app.export import export
from anomascope.app.inference_outputs import display_range
from anomascope.app.pacs import Pacs, PacsError
from anomascope.app.viewer import (
    MaskPayloadError,
    VolumeStore,
    mask_outline,
    pack_mask,
    read_payload,
    read_thresholds,
    write_volume,
)
from anomascope.engine.calibration import Calibration
from anomascope.engine.inference import CaseResult, NonFiniteResultError, score_case
from anomascope.engine.io import Case, ImageReadError, load_case
from anomascope.engine.io.limits import LimitsError
from anomascope.engine.methods import registry
from anomascope.engine.preprocess import InputMismatchError
from anomascope.engine.profile import CaseProfile, TrainingProfile, region
from anomascope.storage import (
    Database,
    StorageError,
    annotations_for_export,
    case_history,
    case_summaries,
    decode_mask,
    latest_presets,
    record_run,
    record_sent,
    save_annotation,
)

WINDOW_PRESETS = {
    "CT soft tissue (40/400)": (40.0, 400.0),
    "CT lung (-600/1500)": (-600.0, 1500.0),
    "CT bone (400/1800)": (400.0, 1800.0),
    "CT brain (40/80)": (40.0, 80.0),
}
HEATMAP_COLOURMAP = "inferno"
MARKDOWN_CHARACTERS = re.compile(r"([\\`*_~\[\]<>|#])")  # escaped where text must show as written
EXPORT_KEEP_S = 600  # the page hands an export to the browser at once; the copy here is kept this long


class ReviewError(Exception):
    """Something the reader should see as a sentence on the page."""


@dataclass
class RunView:
    """One method's result on the open case, stored as a run when the reader pressed Run."""

    label: str  # the catalogue choice
    method: str
    run_id: int | None  # None only in a preview: the next case of a tuning session, shown before it is opened
    result: CaseResult
    presets: dict[str, float]  # calibrated thresholds by name
    threshold: float  # the threshold the viewer starts at
    threshold_method: str
    image_level: bool


@dataclass
class MaskVersion:
    """A saved annotation version: the next save on this case corrects its lineage."""

    annotation_id: int
    lineage: str
    version: int
    run_id: int | None
    mask: np.ndarray  # (S, H, W)
    threshold: float | None
    threshold_method: str | None


@dataclass
class ReviewSession:
    case: Case | None = None
    case_id: int | None = None
    run: RunView | None = None
    saved: MaskVersion | None = None  # the version on screen, or the last one saved in this view
    versions: list[MaskVersion] = field(default_factory=list)  # every version of that lineage, oldest first
    second: RunView | None = None  # a second method's result, shown beside the first (the compare view)
    token: str | None = None  # the viewer scene on screen
    warnings: list[str] = field(default_factory=list)  # bundle / image mismatches the reader must acknowledge


class ReviewApp:
    def __init__(
        self,
        db: Database,
        catalogue: Catalogue,
        cases_dir: Path,
        device: torch.device | None = None,
        volumes: VolumeStore | None = None,
        pacs: Pacs | None = None,
    ):
        self.db, self.catalogue, self.cases_dir, self.pacs = db, catalogue, cases_dir, pacs
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.volumes = volumes or VolumeStore(cases_dir.parent / "viewer")
        self.exports = VolumeStore(cases_dir.parent / "exports")  # one folder per export, swept as they age

    # --- opening cases ---------------------------------------------------------------------

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
        return self._latest(ReviewSession(case=case, case_id=record.id))

    def open_folder(self, paths: list[str], reader: str = "") -> ReviewSession:
        """The files of an uploaded folder, as one series; the gathered copy is removed once read."""
        folder = gather_series(paths)
        try:
            return self.open_file(folder, reader)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

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
        return self._latest(ReviewSession(case=case, case_id=case_id))

    def _latest(self, session: ReviewSession) -> ReviewSession:
        """Show the case's most recent annotation, with every version of its lineage to compare."""
        annotations = case_history(self.db, session.case_id).annotations
        if annotations:
            lineage = annotations[-1].lineage
            session.versions = [self._version(a, session.case) for a in annotations if a.lineage == lineage]
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

    def show_version(self, session: ReviewSession, version: int) -> ReviewSession:
        """Put an earlier (or the latest) saved version on screen; saving corrects the same lineage."""
        return replace(session, saved=_version_of(session, version), token=None)

    def comparison(self, session: ReviewSession, version: int | None) -> dict:
        """A saved version for the viewer to outline over the mask on screen (and to measure their
        overlap against, as the reader edits); {} clears the comparison."""
        if version is None:
            return {}
        if session.case is None or session.token is None:
            raise ReviewError("open an image first")
        picked = _version_of(session, version)
        folder = self._scene_folder(session)
        path = write_volume(
            folder / f"version-{version}.nii.gz",
            mask_outline(picked.mask).astype(np.float32),
            viewer_spacing(session.case),
        )
        return {
            "token": session.token,
            "version": version,
            "annotation_id": picked.annotation_id,
            "url": self.volumes.url(path),
            "mask": pack_mask(picked.mask),
        }

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

    # --- running a method ------------------------------------------------------------------

    def run(
        self, session: ReviewSession, label: str, reader: str = "", scored: CaseResult | None = None
    ) -> ReviewSession:
        """Run method `label` on the open case and store the run; `scored` is its result where it was
        already computed (a tuning session scores the next cases in the background). A second method on
        screen stays beside it unless it is the same one."""
        view = self._scored_run(session, label, reader, scored)
        return replace(
            session,
            run=view,
            second=session.second if session.second and session.second.label != label else None,
            token=None,
            warnings=mismatch_warnings(self.catalogue.choices[label].bundle.manifest, session.case),
        )

    def run_second(self, session: ReviewSession, label: str, reader: str = "") -> tuple[ReviewSession, dict]:
        """Score the open case with a second method and describe it for the pane beside the first: the
        same case, its own map and threshold. The first method's mask on screen is left as it is."""
        if session.run is None or session.token is None:
            raise ReviewError("run a method first; the second method is shown beside it")
        if session.run.image_level:
            raise ReviewError(f"{session.run.label} makes no map; run a method with maps to compare another with it")
        if label == session.run.label:
            raise ReviewError(f"{label} is already on screen; pick another method to compare with")
        if label in self.catalogue.choices and not registry().get(self.catalogue.choices[label].method).maps:
            raise ReviewError(f"{label} scores whole images and makes no map; compare two methods with maps")
        compared = replace(session, second=self._scored_run(session, label, reader))
        return compared, self._second_scene(compared, self._scene_folder(compared))

    def swap_sides(self, session: ReviewSession, sent: str) -> ReviewSession:
        """Make the second method the one the reader corrects and saves, each method keeping the threshold
        its pane showed (`sent`, from the viewer); a save then records the second method's run."""
        if session.run is None or session.second is None:
            raise ReviewError("compare two methods first")
        try:
            shown = read_thresholds(sent, session.token or "")
        except MaskPayloadError as exc:
            raise ReviewError(str(exc)) from exc
        first = replace(session.run, threshold=shown.first[0], threshold_method=shown.first[1])
        second = replace(session.second, threshold=shown.second[0], threshold_method=shown.second[1])
        return replace(
            session,
            run=second,
            second=first,
            token=None,
            warnings=mismatch_warnings(self.catalogue.choices[second.label].bundle.manifest, session.case),
        )

    @staticmethod
    def close_second(session: ReviewSession) -> ReviewSession:
        return replace(session, second=None)

    def _scored_run(self, session: ReviewSession, label: str, reader: str, scored: CaseResult | None = None) -> RunView:
        if session.case is None:
            raise ReviewError("open an image first")
        if label not in self.catalogue.choices:
            raise ReviewError("pick a trained method first")
        predictor = self.catalogue.predictor(label, self.device)
        try:
            result = scored or score_case(predictor, session.case)
        except InputMismatchError as exc:
            raise ReviewError(str(exc)) from exc
        bundle = predictor.bundle
        view = self._readout(label, result, run_id=None)
        record = record_run(
            self.db,
            case_id=session.case_id,
            method=predictor.name,
            bundle_id=bundle.id,
            weights_hash=bundle.manifest["weights_sha256"],
            parameters=predictor.parameters,
            threshold=view.threshold,
            threshold_method=view.threshold_method,
            image_score=result.image_score,
            seconds=result.seconds,
            device=self.device.type,
            actor=reader.strip() or "anonymous",
        )
        return replace(view, run_id=record.id)

    def _readout(self, label: str, result: CaseResult, run_id: int | None) -> RunView:
        """Method `label`'s result as the viewer starts it: its presets and the threshold it opens at."""
        predictor = self.catalogue.predictor(label, self.device)
        presets = {**predictor.calibration.values(), **self.site_presets(predictor.bundle.id, predictor.name)}
        threshold, how = default_threshold(predictor.calibration, result)
        return RunView(label, predictor.name, run_id, result, presets, threshold, how, result.heatmap is None)

    def preview(self, case: Case, label: str, result: CaseResult) -> dict:
        """How the viewer will show `case` scored by `label`, before it is opened: its volumes, written under
        a token of their own, and the threshold it will start at. Nothing is stored. The scene that opening
        the case makes later has the same `content`, so the viewer keeps the volumes it already shows."""
        token, folder = self.volumes.new_scene()
        spacing = viewer_spacing(case)
        run = self._readout(label, result, run_id=None)
        return {
            "token": None,  # a scene's token names an opened case; this one is not opened yet
            **self._case_scene(case, f"{Path(case.source).name} (opening…)", folder, spacing),
            **self._run_scene(run, folder, spacing),
            "content": scene_content(case, label),
            "preview": token,
        }

    def site_presets(self, bundle_id: str, readout: str) -> dict[str, float]:
        """The newest version of each site threshold stored by `anomascope tune` for this read-out."""
        return {
            f"{preset.name} (site, v{preset.version})": preset.value
            for preset in latest_presets(self.db, bundle_id)
            if preset.readout in (None, readout)
        }

    def site_preset_notes(self, label: str) -> str:
        """Markdown lines on where each site threshold offered with method `label` came from."""
        if label not in self.catalogue.choices:
            return ""
        choice = self.catalogue.choices[label]
        lines = [
            f"- site threshold **{p.name}** (v{p.version}): {p.value:.4g}, {p.provenance}; saved by "
            f"{p.actor or 'unknown'} on {p.created:%Y-%m-%d}"
            for p in latest_presets(self.db, choice.bundle.id)
            if p.readout in (None, choice.method)
        ]
        return "\n".join(lines)

    def score_text(self, session: ReviewSession) -> str:
        run = session.run
        predictor = self.catalogue.predictor(run.label, self.device)
        score = run.result.image_score
        text = f"Image score **{score:.4g}** ({run.result.seconds:.2f} s on {self.device.type})"
        calibration = predictor.calibration
        percentile = calibration.percentile_of(score)
        if percentile is not None:
            text += (
                f" — higher than {percentile:.0f}% of {len(calibration.normal_image_scores)} normal validation images"
            )
        if run.image_level:
            text += (
                ". This method scores whole images and makes no heatmap: the threshold decides whether the"
                " image is flagged (shown in the viewer), and any mask you save is the one you draw."
            )
        return text

    def threshold_range(self, run: RunView) -> tuple[float, float]:
        """The threshold slider's range: the map's values (score_case guarantees they are finite), or for
        image-level methods the image scores of the normal validation images, this image and the calibrated
        thresholds."""
        if not run.image_level:
            return float(run.result.heatmap.min()), float(run.result.heatmap.max())
        predictor = self.catalogue.predictor(run.label, self.device)
        values = [
            run.result.image_score,
            *run.presets.values(),
            *predictor.calibration.normal_image_scores,
        ]
        return float(min(values)), float(max(values))

    # --- what the viewer shows ---------------------------------------------------------------

    def scene(self, session: ReviewSession, previous_token: str | None = None) -> tuple[ReviewSession, dict]:
        """Write the session's volumes for the viewer and describe them; the previous scene's files go."""
        self.volumes.drop(previous_token)
        if session.case is None:
            session.token = None
            return session, {}
        case = session.case
        token, folder = self.volumes.new_scene()
        session.token = token
        spacing = viewer_spacing(case)
        scene = {
            "token": token,
            **self._case_scene(case, f"{Path(case.source).name} (case {session.case_id})", folder, spacing),
            "content": scene_content(case, session.run.label if session.run else None),
        }
        if session.run is not None:
            scene.update(self._run_scene(session.run, folder, spacing))
        if session.second is not None:
            scene["second"] = self._second_scene(session, folder)
        if _shows_saved(session):
            saved = session.saved
            scene["mask"] = pack_mask(saved.mask)
            if scene["threshold"] is not None and saved.threshold is not None:
                scene["threshold"].update(value=saved.threshold, method=saved.threshold_method or "manual")
        return session, scene

    @staticmethod
    def mask_source(session: ReviewSession) -> str:
        """Where the mask on screen came from, and what saving it makes."""
        if session.saved is None:
            return ""
        latest = session.versions[-1].version
        if _shows_saved(session):
            return (
                f"Showing saved version {session.saved.version} of {latest} "
                f"(annotation {session.saved.annotation_id}); saving makes version {latest + 1}."
            )
        return (
            f"Showing the thresholded map of this run; saved version {latest} stays in History, "
            f"and saving makes version {latest + 1}."
        )

    def _case_scene(self, case: Case, name: str, folder: Path, spacing) -> dict:
        """The case's own part of a scene: its image volume (written to `folder`), title and geometry."""
        channels = case.shape[1]
        image = write_volume(folder / "image.nii.gz", case.pixels if channels == 3 else case.pixels[:, 0], spacing)
        centre, width = case.window
        return {
            "title": f"{name} · {case.modality} · {'×'.join(map(str, case.shape))}",
            "dims": [case.shape[3], case.shape[2], case.shape[0]],
            "spacing": list(spacing) if case.spacing else None,
            "image": {
                "url": self.volumes.url(image),
                "rgb": channels == 3,
                "window": [centre - width / 2, centre + width / 2],
            },
            "window_presets": window_presets(case),
            "heatmap": None,
            "restoration": None,
            "uncertainty": None,
            "threshold": None,
            "mask": None,
        }

    def _scene_folder(self, session: ReviewSession) -> Path:
        try:
            return self.volumes.folder(session.token or "")
        except MaskPayloadError as exc:
            raise ReviewError(str(exc)) from exc

    def _second_scene(self, session: ReviewSession, folder: Path) -> dict:
        """The second method's pane: its map (written beside the scene's own files) and its threshold."""
        second = session.second
        part = self._run_scene(second, folder, viewer_spacing(session.case), prefix="second-")
        return {"token": session.token, "label": second.label, "run_id": second.run_id, **part}

    def _run_scene(self, run: RunView, folder: Path, spacing, prefix: str = "") -> dict:
        result = run.result
        predictor = self.catalogue.predictor(run.label, self.device)
        low, high = self.threshold_range(run)
        part = {
            "threshold": {
                "value": run.threshold,
                "method": run.threshold_method,
                "min": low,
                "max": high,
                "presets": run.presets,
                "image_score": result.image_score,
                "image_level": run.image_level,
                # What a cut-off on image scores means: how the normal validation images fall around it.
                "normal_scores": sorted(predictor.calibration.normal_image_scores) if run.image_level else [],
            }
        }
        if result.heatmap is not None:
            shown = display_range(predictor, result.heatmap)
            part["heatmap"] = {
                "url": self.volumes.url(write_volume(folder / f"{prefix}heatmap.nii.gz", result.heatmap, spacing)),
                "window": list(shown),
                "colormap": HEATMAP_COLOURMAP,
            }
        if prefix:  # the second pane shows the map and its mask only
            return part
        if result.restoration is not None:
            restoration = result.restoration * 255.0 if result.restoration.shape[1] == 3 else result.restoration[:, 0]
            path = write_volume(folder / "restoration.nii.gz", restoration, spacing)
            method = self.catalogue.choices[run.label].method
            part["restoration"] = {
                "caption": f"{registry().get(method).restoration} ({method.upper()})",
                "url": self.volumes.url(path),
                "rgb": result.restoration.shape[1] == 3,
                "window": [0.0, 255.0 if result.restoration.shape[1] == 3 else 1.0],
            }
        if result.uncertainty is not None:
            u = result.uncertainty
            path = write_volume(folder / "uncertainty.nii.gz", u, spacing)
            part["uncertainty"] = {"url": self.volumes.url(path), "window": [float(u.min()), float(u.max()) or 1.0]}
        return part

    # --- saving and export -------------------------------------------------------------------

    def save(
        self,
        session: ReviewSession,
        payload: str,
        reader: str,
        label: str = "",
        note: str = "",
        acknowledged: bool = False,
        tuning: tuple[int, int] | None = None,
    ) -> tuple[ReviewSession, str]:
        """Store the mask the viewer sent as the next version of this case's annotation, in one transaction;
        with `tuning` (session id, worklist position) it is also that tuning session's entry for the case."""
        if session.case is None or session.token is None:
            raise ReviewError("open an image first")
        if not reader or not reader.strip():
            raise ReviewError("enter the reader's name before saving")
        if session.warnings and not acknowledged:
            raise ReviewError("read the model warning beside the result and tick that you did before saving")
        slices, _, rows, cols = session.case.shape
        try:
            sent = read_payload(payload, session.token, (slices, rows, cols))
        except MaskPayloadError as exc:
            raise ReviewError(str(exc)) from exc
        threshold, how = self._recorded_threshold(session, sent.threshold, sent.threshold_method)
        run_id = session.run.run_id if session.run else session.saved.run_id if session.saved else None
        mask = sent.mask if slices > 1 else sent.mask[0]
        annotation = save_annotation(
            self.db,
            case_id=session.case_id,
            run_id=run_id,
            mask=mask,
            author=reader,
            label=label or None,
            note=note or None,
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
        area = area_text(session.case, sent.mask)
        return saved, (
            f"Saved annotation {annotation.id} (version {annotation.version}) by {reader.strip()}: "
            f"{area}, "
            + (f"threshold {threshold:.4g} ({how})" if threshold is not None else "drawn by hand (no method run)")
            + (", with edits" if sent.edited else "")
            + (f"; the mask came from {session.run.label}" if session.second is not None else "")
            + "."
        )

    def _recorded_threshold(
        self, session: ReviewSession, value: float | None, how: str
    ) -> tuple[float | None, str | None]:
        """The threshold a save records and how it was chosen, checked against the run the mask belongs to:
        the viewer's word alone once recorded another case's threshold (a viewer that kept it across cases).
        With a run on screen it is one of the run's presets at its own value, or a manual value (within the
        map's range, for a method with maps); on a reopened annotation with no map, the saved version's own."""
        saved = session.saved if _shows_saved(session) else None
        if session.run is None and saved is None:  # drawn by hand before any run: a manual annotation
            if value is not None:
                raise ReviewError(_stale_threshold(value, how, "no method has run on it"))
            return None, None
        if session.run is None:
            if value is not None and not _same_threshold((value, how), (saved.threshold, saved.threshold_method)):
                raise ReviewError(_stale_threshold(value, how, "no map is on screen"))
            return saved.threshold, saved.threshold_method
        run = session.run
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

    # --- the PACS ----------------------------------------------------------------------------

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
        sent = "its Segmentation" + (f" and the Parametric Map of run {row.run.id}" if len(paths) > 1 else "")
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


def _shows_saved(session: ReviewSession) -> bool:
    """A saved version is on screen unless a newer run's map replaced it."""
    return session.saved is not None and (session.run is None or session.run.run_id == session.saved.run_id)


def _version_of(session: ReviewSession, version: int) -> MaskVersion:
    picked = next((v for v in session.versions if v.version == version), None)
    if picked is None:
        raise ReviewError(f"this case has no saved version {version}")
    return picked


def default_threshold(calibration: Calibration, result: CaseResult) -> tuple[float, str]:
    """The calibration's preferred threshold and its name; without calibration, one from this image."""
    preferred = calibration.preferred()
    if preferred is not None:
        return preferred[1].value, preferred[0]
    if result.heatmap is None:
        return result.image_score, "this image's score (no calibration)"
    return float(np.percentile(result.heatmap, 99)), "99th percentile of this map"


def viewer_spacing(case: Case) -> tuple[float, float, float]:
    """(column, row, slice) voxel size in mm for the viewer; 1 where the source does not say."""
    row, col = case.spacing or (1.0, 1.0)
    return float(col), float(row), float(case.slice_spacing or 1.0)


def scene_content(case: Case, label: str | None) -> str:
    """What a scene shows, independent of where its files lie: the case's pixels and geometry, and the
    method that scored it. Two scenes with the same content show the same volumes."""
    return f"{content_hash(case)}|{label or ''}"


def window_presets(case: Case) -> list[list]:
    """The viewer's window choices in the image's units: the file's own, full range, then CT presets."""
    centre, width = case.window
    finite = case.pixels[np.isfinite(case.pixels)]
    presets = [
        ["From file", [centre - width / 2, centre + width / 2]],
        ["Full range", [float(finite.min()), float(finite.max())]],
    ]
    if case.modality == "CT":
        presets += [[name, [c - w / 2, c + w / 2]] for name, (c, w) in WINDOW_PRESETS.items()]
    return presets


def area_text(case: Case, mask: np.ndarray) -> str:
    count = int(mask.sum())
    if case.spacing is None:
        return f"{count} px" if case.shape[0] == 1 else f"{count} voxels"
    row, col = case.spacing
    if case.shape[0] == 1:
        return f"{count} px = {count * row * col:.1f} mm²"
    return f"{count} voxels = {count * row * col * (case.slice_spacing or 1.0):.1f} mm³"


def mismatch_warnings(manifest: dict, case: Case) -> list[str]:
    """What the reader must know when a bundle meets an image unlike its training data: another modality
    or body part, where both the bundle and the image's file record it."""
    trained, seen = TrainingProfile.from_manifest(manifest), CaseProfile.of(case)
    described = (manifest.get("data") or {}).get("normal") or trained.images
    warnings = []
    if trained.modality and seen.modality and seen.modality != trained.modality:
        warnings.append(
            f"This model was trained on {trained.modality} images ({described}); this image is {seen.modality}."
        )
    if trained.body_part and seen.body_part and region(seen.body_part) != region(trained.body_part):
        warnings.append(
            f"This model was trained on images of the {trained.body_part.lower()} ({described}); this image is of "
            f"the {seen.body_part.lower()}."
        )
    return [f"{warning} Its map may mean nothing here." for warning in warnings]


def gather_series(paths: list[str]) -> Path:
    """Files of an uploaded folder (each in its own temporary upload folder) into one series folder."""
    folder = Path(tempfile.mkdtemp(prefix="anomascope-series-"))
    for index, path in enumerate(paths):
        shutil.copy2(path, folder / f"{index:05d}_{Path(path).name}")
    return folder


def friendly(exc: Exception) -> str:
    """The error in one line for the page's Markdown panes, its text shown as written."""
    if isinstance(
        exc,
        (ImageReadError, ReviewError, StorageError, InputMismatchError, NonFiniteResultError, LimitsError, PacsError),
    ):
        return f"⚠️ {markdown_text(str(exc))}"
    return f"⚠️ Unexpected error ({type(exc).__name__}): {markdown_text(str(exc))}"


def markdown_text(text: str) -> str:
    """`text` for a Markdown pane, shown as written: file names and paths hold the characters Markdown
    formats with (two tildes strike out what lies between them, underscores and stars emphasise)."""
    return MARKDOWN_CHARACTERS.sub(r"\\\1", text)
