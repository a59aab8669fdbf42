"""Anomaly methods: one subpackage per method, listed by one registry (`registry.py`). Importing this
package imports no torch; a method's networks load when its read-out or training plan is asked for."""

from .method import Method, Option
from .registry import (
    ENTRY_POINT_GROUP,
    Registry,
    UnknownMethodError,
    default_config,
    make_predictor,
    reference_bundle,
    registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Method",
    "Option",
    "Registry",
    "UnknownMethodError",
    "default_config",
    "make_predictor",
    "reference_bundle",
    "registry",
]
