"""Serving the page: sign-in, concurrency and the upload limit around `build_app`."""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from anomascope.app.page.layout import build_app
from anomascope.app.review.app import ReviewApp
from anomascope.app.signin import ReaderGate, SignInGuard, SignInPolicy
from anomascope.engine.io import ReadLimits
from anomascope.storage import has_accounts


def serve(app: ReviewApp, host: str, port: int, concurrency: int = 4, block: bool = True) -> gr.Blocks:
    """Start the page: sign-in when reader accounts exist (every request's account checked, failed sign-ins
    slowed and locked: app/signin.py), `concurrency` events at once (a slow upload or
    inference never holds up the other readers), uploads capped at ANOMASCOPE_MAX_BYTES."""
    login = has_accounts(app.db)
    demo = build_app(app, login=login)
    demo.queue(default_concurrency_limit=concurrency)
    guard = SignInGuard(app.db, SignInPolicy.from_env()) if login else None
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        show_error=True,
        prevent_thread_lock=not block,
        quiet=not block,
        max_file_size=ReadLimits.from_env().max_bytes,
        # gradio awaits a coroutine `auth` (routes.py, login) but annotates it as returning bool
        auth=guard.check if guard else None,  # type: ignore[arg-type]
        app_kwargs={"middleware": [Middleware(ReaderGate, db=app.db)]} if login else None,
    )
    return demo
