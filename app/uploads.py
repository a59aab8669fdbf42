"""Which files a reader may hand the page to open (no Gradio here).

A file component's value is a path the browser sends back, and anyone who can reach the page can send
any path; only files that arrived through the page's own uploads are the reader's to open.
"""

from __future__ import annotations

import os
from pathlib import Path

from anomascope.app.review import ReviewError


def uploaded(path: str | Path, cache: str | Path) -> Path:
    """`path` with its links resolved, when it lies inside `cache`, the folder uploads land in; any other
    is refused with a ReviewError before anything of it is read."""
    # Resolved before comparing: a link inside the cache may point anywhere on the server.
    root = os.path.realpath(cache)
    real = os.path.realpath(path)
    if real == root or os.path.commonpath([real, root]) != root:
        raise ReviewError(f"{Path(path).name} was not uploaded through this page; only files uploaded here are opened")
    return Path(real)
