"""The package list, found rather than written out. app/, engine/, storage/ and assets/ install as
anomascope.app, anomascope.engine, ... (pyproject.toml's package-dir), a prefix that setuptools' own
discovery cannot add; so the packages under each folder are found here and prefixed. Everything else
about the build is in pyproject.toml."""

from pathlib import Path

from setuptools import setup

# Each top-level folder and the package it installs as; assets/ holds data, not modules.
FOLDERS = {"app": "anomascope.app", "engine": "anomascope.engine", "storage": "anomascope.storage"}


def packages_under(folder: str, package: str) -> set[str]:
    """Every folder under `folder` that holds a module, as a dotted name under `package`. Folders without an
    __init__.py count too: Alembic's migrations/ and versions/ are namespace packages."""
    root = Path(__file__).parent / folder
    return {".".join((package, *path.parent.relative_to(root).parts)) for path in root.rglob("*.py")}


setup(packages=sorted({"anomascope.assets"}.union(*(packages_under(f, p) for f, p in FOLDERS.items()))))
