"""Who acts on the page: the signed-in reader when accounts exist, else the name typed."""

from __future__ import annotations

import gradio as gr


def actor(login: bool, typed: str, request: gr.Request) -> str:
    """Who acts: the signed-in reader, never a typed name, when accounts exist."""
    return (request.username or "") if login else (typed or "")


def signed_in(request: gr.Request) -> str:
    return request.username or ""
