"""The review's errors as the page's Markdown panes show them: one line, its text shown as written."""

from __future__ import annotations

import re

from anomascope.app.pacs import PacsError
from anomascope.app.review.session import ReviewError
from anomascope.engine.inference import NonFiniteResultError
from anomascope.engine.io import ImageReadError
from anomascope.engine.io.limits import LimitsError
from anomascope.engine.preprocess import InputMismatchError
from anomascope.storage import StorageError

MARKDOWN_CHARACTERS = re.compile(r"([\\`*_~\[\]<>|#])")  # escaped where text must show as written


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
