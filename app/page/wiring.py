"""Wiring a handler to an event: `bind` gives it the services and components it takes first."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def bind(handler: Callable[..., T], *given: Any) -> Callable[..., T]:
    """`handler` with its first arguments `given`, as Gradio reads a function: under the handler's name (the
    event's API name) with the rest of its parameters and their annotations (a `gr.Request` or
    `gr.SelectData` parameter is filled in by Gradio). `functools.partial` would hide both from Gradio."""
    signature = inspect.signature(handler)
    rest = list(signature.parameters.values())[len(given) :]

    @functools.wraps(handler)
    def bound(*args: Any, **kwargs: Any) -> T:
        return handler(*given, *args, **kwargs)

    names = {parameter.name for parameter in rest} | {"return"}
    bound.__annotations__ = {name: hint for name, hint in handler.__annotations__.items() if name in names}
    bound.__signature__ = signature.replace(parameters=rest)  # type: ignore[attr-defined]
    return bound
