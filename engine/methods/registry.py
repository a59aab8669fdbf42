"""The one list of methods: the built-in folders of engine/methods, then the methods that installed
packages declare in the entry-point group `anomascope.methods`. A plugin that fails to load is kept
as unavailable, with the reason, and never stops the others. Importing this imports no torch."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .method import Method

if TYPE_CHECKING:
    import torch

    from ..bundle import ModelBundle
    from .base import Predictor

ENTRY_POINT_GROUP = "anomascope.methods"
# The built-in methods, in the order the command line and the README list them: each is the
# subpackage of engine/methods that defines METHOD.
BUILT_IN = ("sano", "spr", "ppii", "cddpm", "dia", "median_distance", "flair_zscore")


class UnknownMethodError(ValueError):
    """A method name that no installed method has, or one whose plugin failed to load."""


@dataclass
class Registry:
    methods: dict[str, Method] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> why it could not be loaded

    def get(self, name: str) -> Method:
        if name in self.methods:
            return self.methods[name]
        if name in self.unavailable:
            raise UnknownMethodError(f"method {name!r} is unavailable: {self.unavailable[name]}")
        raise UnknownMethodError(f"unknown method {name!r}; installed: {', '.join(self.methods)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.methods)

    @property
    def listed(self) -> tuple[str, ...]:
        """Installed and unavailable names: asking for an unavailable one says why it is unavailable."""
        return (*self.methods, *(name for name in self.unavailable if name not in self.methods))

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(name for name, method in self.methods.items() if method.reference)


@functools.cache
def registry() -> Registry:
    """The installed methods, loaded once per process (`reload()` after installing a plugin)."""
    found = Registry()
    for package in BUILT_IN:
        method = importlib.import_module(f"{__package__}.{package}").METHOD
        found.methods[method.name] = method
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        _add_plugin(found, entry_point)
    return found


def reload() -> Registry:
    registry.cache_clear()
    return registry()


def _add_plugin(found: Registry, entry_point: metadata.EntryPoint) -> None:
    where = entry_point.dist.name if entry_point.dist else entry_point.value
    try:
        method = entry_point.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, never fatal
        found.unavailable[entry_point.name] = (
            f"{where}: {entry_point.value} failed to import ({type(exc).__name__}: {exc})"
        )
        return
    problem = _plugin_problem(found, entry_point.name, method)
    if problem:
        found.unavailable[entry_point.name] = f"{where}: {problem}"
        return
    found.methods[method.name] = dataclasses.replace(method, source=where)


def _plugin_problem(found: Registry, name: str, method: Any) -> str | None:
    if not isinstance(method, Method):
        return f"the entry point {name!r} is a {type(method).__name__}, not an anomascope Method"
    if method.name in found.methods:
        return f"the method name {method.name!r} is already taken by {found.methods[method.name].source}"
    flags = {option.flag for known in found.methods.values() for option in known.options}
    clash = [option.flag for option in method.options if option.flag in flags]
    if clash:
        return f"its options {', '.join(clash)} are already declared by another method"
    return None


def default_config(name: str) -> Any:
    """The config of method `name` with its paper's defaults."""
    return registry().get(name).defaults()


def make_predictor(
    bundle: ModelBundle, device: torch.device, method: str | None = None, precision: str = "auto"
) -> Predictor:
    """The bundle's read-out `method` (its own method by default) on `device`; `precision` is what the
    networks run in ("auto": bf16 on CUDA, fp32 on the CPU)."""
    from ..bundle import BundleError

    method = method or bundle.method
    readouts = bundle.manifest.get("readouts", [bundle.method])
    if method not in readouts:
        raise BundleError(f"{bundle.path.name}: bundle {bundle.id} supports {', '.join(readouts)}, not {method!r}")
    try:
        predictor_class = registry().get(method).predictor_class()
    except UnknownMethodError as exc:
        raise BundleError(f"{bundle.path.name}: {exc}") from exc
    return predictor_class(bundle, device, precision)


def reference_bundle(name: str) -> ModelBundle:
    """An uncalibrated, weightless bundle of a training-free method with its default config, for
    `eval --baseline`, which calibrates it on the split it evaluates."""
    from ..bundle import ModelBundle
    from ..config import to_dict

    config = default_config(name)
    return ModelBundle(
        Path(name),
        {"id": name, "method": name, "readouts": [name], "config": to_dict(config), "calibration": {}},
    )
