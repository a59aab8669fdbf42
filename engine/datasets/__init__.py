"""Prepared datasets: MVTec-AD layout built from the shared public data."""

from .layout import LayoutWriter, split_groups
from .prepare import PREPARERS, PrepareError, prepare

__all__ = ["PREPARERS", "PrepareError", "prepare", "LayoutWriter", "split_groups"]
