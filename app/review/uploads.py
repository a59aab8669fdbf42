"""Which files a reader may hand the page to open (no Gradio here): uploads, and the worklist folders an
administrator offers.

A file component's value is a path the browser sends back, and anyone who can reach the page can send
any path; only files that arrived through the page's own uploads are the reader's to open.
"""

from __future__ import annotations

import os
from pathlib import Path

from anomascope.app.review.session import ReviewError


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` lies inside `folder` (not the folder itself), links followed on both: a link inside a
    folder may point anywhere on the server."""
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return root in real.parents


def uploaded(path: str | Path, cache: str | Path) -> Path:
    """`path` with its links resolved, when it lies inside `cache`, the folder uploads land in; any other
    is refused with a ReviewError before anything of it is read."""
    if not inside(path, cache):
        raise ReviewError(f"{Path(path).name} was not uploaded through this page; only files uploaded here are opened")
    return Path(os.path.realpath(path))
