"""What the viewer shows: the session's volumes, written for the browser viewer, and a description of them
(the scene). The browser viewer holds the threshold and the mask; `scene` tells it what to show. A preview
shows the next case of a tuning session the same way before it is opened."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomascope.app.inference_outputs import display_range
from anomascope.app.review.cases import content_hash
from anomascope.app.review.runs import Runs
from anomascope.app.review.session import ReviewError, ReviewSession, RunView, shows_saved
from anomascope.app.viewer import MaskPayloadError, pack_mask, write_volume
from anomascope.engine.inference import CaseResult
from anomascope.engine.io import Case
from anomascope.engine.methods import registry

WINDOW_PRESETS = {
    "CT soft tissue (40/400)": (40.0, 400.0),
    "CT lung (-600/1500)": (-600.0, 1500.0),
    "CT bone (400/1800)": (400.0, 1800.0),
    "CT brain (40/80)": (40.0, 80.0),
}
HEATMAP_COLOURMAP = "inferno"


class Scene(Runs):
    """The viewer's scenes, of the open case and of a case before it is opened; a run's part of a scene is its
    read-out (`Runs`)."""

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
        saved = session.saved if shows_saved(session) else None
        if saved is not None:
            scene["mask"] = pack_mask(saved.mask)
            if scene["threshold"] is not None and saved.threshold is not None:
                scene["threshold"].update(value=saved.threshold, method=saved.threshold_method or "manual")
        return session, scene

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
        second = session.compared_run
        part = self._run_scene(second, folder, viewer_spacing(session.opened_case), prefix="second-")
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
