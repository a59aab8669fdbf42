"""`ReviewApp`: the one object the review page holds."""

from __future__ import annotations

from anomascope.app.review.annotations import Annotations
from anomascope.app.review.compare import Compare
from anomascope.app.review.pacs_link import PacsLink


class ReviewApp(Compare, Annotations, PacsLink):
    """What the review page does, as plain functions over one `ReviewSession` per reader (no Gradio here),
    so every callback is testable without a browser: opening cases (`Cases`), running methods (`Runs`) and a
    second beside the first (`Compare`), the viewer's scene (`Scene`), saving (`Annotations`) and the PACS
    (`PacsLink`)."""
