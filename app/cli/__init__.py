"""The `anomascope` command line: inspect | prepare | train | infer | eval | tune | serve | export | users.

One module per command holds its code and registers its subparser (`register`); common.py holds what they
share. Every command imports its heavy modules (torch, storage, gradio, plotly) inside its function, so that
`anomascope --help` stays fast and the device kit's commands run without the app's packages."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

from anomascope.app.cli import eval as evaluate
from anomascope.app.cli import export, infer, inspect, prepare, serve, train, tune, users
from anomascope.app.cli.common import EXIT_BAD_INPUT, CommandError, user_errors
from anomascope.app.cli.serve import is_loopback, pacs_of
from anomascope.engine.methods import registry

__all__ = ["EXIT_BAD_INPUT", "CommandError", "build_parser", "is_loopback", "main", "pacs_of", "user_errors"]

# In the order `anomascope --help` lists them.
COMMANDS = (inspect, prepare, train, infer, evaluate, tune, export, serve, users)


def package_version() -> str:
    """The installed package's version; for a tree run uninstalled (bench/device/setup.sh links its folders
    under the package's name on the lent GPU machine), pyproject.toml's beside them."""
    try:
        return metadata.version("anomascope")
    except metadata.PackageNotFoundError:
        from anomascope.engine.config import load_toml

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        if not pyproject.is_file():
            return "unknown (not installed)"
        return f"{load_toml(pyproject)['project']['version']} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    methods = registry()
    parser = argparse.ArgumentParser(
        prog="anomascope",
        description="Review unsupervised anomaly maps in medical images. Errors on bad input exit with code 2.",
    )
    parser.add_argument("--version", action="version", version=f"anomascope {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub, methods)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train --processes` launches again
    from anomascope.engine.io import quiet_reader_libraries

    quiet_reader_libraries()
    try:
        return args.run(args)
    except user_errors() as exc:
        print(f"anomascope {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
