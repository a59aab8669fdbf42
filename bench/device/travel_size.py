"""Whether a device call's tree fits what travels to the lent machine, checked here before a window is spent.

The device tool sends the checkout's tracked files, its untracked files that git does not ignore, a shared/
folder inside the checkout, and the ignored paths a call carries, 64 MiB in all; a call over that is refused
after the machine has started. Run from the repository root with the paths the call will carry:

    python3 bench/device/travel_size.py .whl prepared/lgg-val20/train prepared/lgg-val20/val \\
        prepared/lgg-val20/ground_truth prepared/lgg-val20/split.json

Prints the bytes of each part and the room left, and exits 1 when the whole is over the limit.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TRAVEL_LIMIT_BYTES = 64 * 2**20


def tree_files(root: Path) -> set[Path]:
    """The files that travel whatever is carried: tracked, untracked but not ignored, and shared/."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = {root / name.decode() for name in listed if name}
    return {path for path in files if path.is_file()} | files_under(root / "shared")


def files_under(path: Path) -> set[Path]:
    if path.is_file():
        return {path}
    return {entry for entry in path.rglob("*") if entry.is_file()} if path.is_dir() else set()


def sizes(root: Path, carry: list[str]) -> dict[str, int]:
    """Bytes by part: the tree, then each carried path (less what the tree already counts)."""
    counted = tree_files(root)
    parts = {"tree": sum(path.stat().st_size for path in counted)}
    for name in carry:
        if not (root / name).exists():
            raise FileNotFoundError(f"{name}: no such file or folder under {root}")
        files = files_under(root / name) - counted
        parts[name] = sum(path.stat().st_size for path in files)
        counted |= files
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("carry", nargs="*", help="the ignored paths the call carries, relative to the root")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: here)")
    parser.add_argument("--limit-bytes", type=int, default=TRAVEL_LIMIT_BYTES, help="default: 64 MiB")
    args = parser.parse_args(argv)
    try:
        parts = sizes(args.root.resolve(), args.carry)
    except FileNotFoundError as exc:
        print(f"travel_size: {exc}", file=sys.stderr)
        return 2
    for name, size in parts.items():
        print(f"{size / 1e6:9.2f} MB  {name}")
    total = sum(parts.values())
    room = args.limit_bytes - total
    verdict = f"fits, {room / 1e6:.2f} MB to spare" if room >= 0 else f"OVER by {-room / 1e6:.2f} MB"
    print(f"{total / 1e6:9.2f} MB  in all, of {args.limit_bytes / 1e6:.2f} MB: {verdict}")
    return 0 if room >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
