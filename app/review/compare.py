"""The compare view: a second method's result beside the first on the open case, and swapping which of the
two the reader corrects and saves."""

from __future__ import annotations

from dataclasses import replace

from anomascope.app.review.runs import mismatch_warnings
from anomascope.app.review.scene import Scene
from anomascope.app.review.session import ReviewError, ReviewSession
from anomascope.app.viewer import MaskPayloadError, read_thresholds
from anomascope.engine.methods import registry


class Compare(Scene):
    """A second method beside the first: scored as a run (`Runs`), shown as a pane of the scene (`Scene`)."""

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
            warnings=mismatch_warnings(self.catalogue.choices[second.label].bundle.manifest, session.opened_case),
        )

    @staticmethod
    def close_second(session: ReviewSession) -> ReviewSession:
        return replace(session, second=None)
