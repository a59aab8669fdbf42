"""One reader's review, as the page holds it: the open case, the runs on screen and the saved mask versions,
with properties that narrow each to what a step needs or tell the reader what to do first.

The session is replaced whole when a case is opened (or fails to open), so nothing of the previous
case survives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from anomascope.engine.inference import CaseResult
from anomascope.engine.io import Case

T = TypeVar("T")


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

    # What a step needs on screen, or the sentence telling the reader what to do first.

    @property
    def opened_case(self) -> Case:
        return _present(self.case, "open an image first")

    @property
    def opened_case_id(self) -> int:
        return _present(self.case_id, "open an image first")  # set with `case`: a case is stored when it is opened

    @property
    def scene_token(self) -> str:
        return _present(self.token, "open an image first")  # set when the opened case's scene is shown

    @property
    def shown_run(self) -> RunView:
        return _present(self.run, "run a method first")

    @property
    def compared_run(self) -> RunView:
        return _present(self.second, "compare two methods first")


def _present(value: T | None, first: str) -> T:
    """`value`, or a ReviewError telling the reader what to do `first` when there is none."""
    if value is None:
        raise ReviewError(first)
    return value


def shows_saved(session: ReviewSession) -> bool:
    """A saved version is on screen unless a newer run's map replaced it."""
    return session.saved is not None and (session.run is None or session.run.run_id == session.saved.run_id)


def version_of(session: ReviewSession, version: int) -> MaskVersion:
    picked = next((v for v in session.versions if v.version == version), None)
    if picked is None:
        raise ReviewError(f"this case has no saved version {version}")
    return picked
