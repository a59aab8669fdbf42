"""Running a method on the open case, and reading its result out: the viewer starts it at the calibration's
preferred threshold, with the calibrated and site thresholds as presets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from anomascope.app.review.services import Services
from anomascope.app.review.session import ReviewError, ReviewSession, RunView
from anomascope.engine.calibration import Calibration
from anomascope.engine.inference import CaseResult, score_case
from anomascope.engine.io import Case
from anomascope.engine.preprocess import InputMismatchError
from anomascope.engine.profile import CaseProfile, TrainingProfile, region
from anomascope.storage import latest_presets, record_run


class Runs(Services):
    """Running a method on the open case, which stores the run, and reading its result out."""

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
            warnings=mismatch_warnings(self.catalogue.choices[label].bundle.manifest, session.opened_case),
        )

    def _scored_run(self, session: ReviewSession, label: str, reader: str, scored: CaseResult | None = None) -> RunView:
        case = session.opened_case
        if label not in self.catalogue.choices:
            raise ReviewError("pick a trained method first")
        predictor = self.catalogue.predictor(label, self.device)
        try:
            result = scored or score_case(predictor, case)
        except InputMismatchError as exc:
            raise ReviewError(str(exc)) from exc
        bundle = predictor.bundle
        view = self._readout(label, result, run_id=None)
        record = record_run(
            self.db,
            case_id=session.opened_case_id,
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
        run = session.shown_run
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
        heatmap = run.result.heatmap
        if heatmap is not None:  # not image-level: a run is image-level exactly when it made no map
            return float(heatmap.min()), float(heatmap.max())
        predictor = self.catalogue.predictor(run.label, self.device)
        values = [
            run.result.image_score,
            *run.presets.values(),
            *predictor.calibration.normal_image_scores,
        ]
        return float(min(values)), float(max(values))


def default_threshold(calibration: Calibration, result: CaseResult) -> tuple[float, str]:
    """The calibration's preferred threshold and its name; without calibration, one from this image."""
    preferred = calibration.preferred()
    if preferred is not None:
        return preferred[1].value, preferred[0]
    if result.heatmap is None:
        return result.image_score, "this image's score (no calibration)"
    return float(np.percentile(result.heatmap, 99)), "99th percentile of this map"


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
