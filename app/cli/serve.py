"""`anomascope serve`: the review app in the browser, refused on the network without reader accounts."""

from __future__ import annotations

import argparse
import sys

from anomascope.app.cli.common import CommandError
from anomascope.engine.methods import Registry

HELP = "start the review app in the browser"
DESCRIPTION = (
    "Readers sign in when accounts exist (anomascope users add); without them the page "
    "runs in single-user mode and listens on this machine only, unless --insecure. "
    "Uploads are limited to ANOMASCOPE_MAX_BYTES (default 2 GiB)."
)


def cmd_serve(args: argparse.Namespace) -> int:
    from anomascope.app.page.layout import default_review_app
    from anomascope.app.page.server import serve
    from anomascope.app.signin import SignInPolicy
    from anomascope.engine.io import ReadLimits
    from anomascope.storage import accounts_at, default_url

    ReadLimits.from_env()  # a bad limit is one sentence here, not an error on every upload
    try:
        SignInPolicy.from_env()
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    # Asked before anything is written: a refused start leaves no database and no data folder behind.
    if not is_loopback(args.host) and not args.insecure and not accounts_at(default_url(create_folder=False)):
        raise CommandError(
            f"--host {args.host} would let anyone on the network read and save every annotation "
            "without signing in: add reader accounts first (anomascope users add NAME), or pass "
            "--insecure"
        )
    serve(default_review_app(pacs=pacs_of(args.dicomweb)), args.host, args.port, args.concurrency)
    return 0


def pacs_of(url: str | None):
    """The PACS that --dicomweb or ANOMASCOPE_DICOMWEB_URL names, its credentials from the environment;
    one that does not answer now is reported and the page starts anyway (the PACS may come back)."""
    from anomascope.app.pacs import Pacs, PacsError

    pacs = None
    try:
        pacs = Pacs.from_environment(url)
        if pacs is not None:
            pacs.studies(limit=1)
    except PacsError as exc:
        if pacs is None:
            raise CommandError(str(exc)) from exc
        print(f"warning: {exc}; the page starts, and its PACS search says so until the PACS answers", file=sys.stderr)
    return pacs


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("serve", help=HELP, description=DESCRIPTION)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="events handled at once, so one slow upload or inference does not block other readers",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without reader accounts (anyone who reaches it can read everything)",
    )
    p.add_argument(
        "--dicomweb",
        metavar="URL",
        help="a PACS's DICOMweb root (QIDO/WADO/STOW-RS, e.g. http://orthanc:8042/dicom-web) to search, open "
        "series from and send Segmentations and Parametric Maps to (default: ANOMASCOPE_DICOMWEB_URL); "
        "credentials only from ANOMASCOPE_DICOMWEB_USER and ANOMASCOPE_DICOMWEB_PASSWORD, or "
        "ANOMASCOPE_DICOMWEB_TOKEN",
    )
    p.set_defaults(run=cmd_serve)
