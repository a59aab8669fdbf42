"""The app's wings import one another one way only (docs/architecture.md, "The app's wings"): the command
line and the page build on the review services, `anomascope serve` starts the page, the review services
import neither, and the modules shared flat in app/ import no wing. Below the app, engine/ and storage/
import nothing of it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
APP = "anomascope.app"
WINGS = ("cli", "review", "page")
SHARED = "shared"  # a module flat in app/
# The parts of app/ each part may import, besides itself and the shared modules.
MAY_IMPORT = {"cli": {"review"}, "page": {"review"}, "review": set(), SHARED: set()}
# The one module of a wing that may import another wing beyond MAY_IMPORT: `anomascope serve` starts the page.
ALSO = {"app/cli/serve.py": {"page"}}


def module_name(path: Path, root: Path) -> str:
    """The installed name of a file under app/, engine/ or storage/: app/cli/serve.py is anomascope.app.cli.serve."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["anomascope", *parts])


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, anywhere in it (a function's own imports too), with its line; `from X import
    y` counts as X.y, since y may be a module."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found += [(node.lineno, module), *((node.lineno, f"{module}.{alias.name}") for alias in node.names)]
    return found


def part_of(module: str) -> str | None:
    """Which part of app/ `module` is in: a wing, SHARED, or None (the package itself, or outside app/)."""
    if not module.startswith(f"{APP}."):
        return None
    first = module.split(".")[2]
    return first if first in WINGS else SHARED


def wing_violations(root: Path) -> list[str]:
    offenders = []
    for path in sorted((root / "app").rglob("*.py")):
        where = path.relative_to(root).as_posix()
        own = part_of(module_name(path, root))
        if own is None:
            continue
        allowed = {own, SHARED, *MAY_IMPORT[own], *ALSO.get(where, set())}
        for line, module in imports(path, root):
            part = part_of(module)
            if part is not None and part not in allowed:
                offenders.append(f"{where}:{line} ({own}) imports {module} ({part})")
    return sorted(set(offenders))


def layer_violations(root: Path) -> list[str]:
    offenders = []
    for layer in ("engine", "storage"):
        for path in sorted((root / layer).rglob("*.py")):
            for line, module in imports(path, root):
                if module == APP or module.startswith(f"{APP}."):
                    offenders.append(f"{path.relative_to(root).as_posix()}:{line} imports {module}")
    return sorted(set(offenders))


def test_each_wing_imports_only_the_wings_it_builds_on():
    assert not wing_violations(ROOT)


def test_engine_and_storage_import_nothing_of_the_app():
    assert not layer_violations(ROOT)


def test_the_checks_catch_a_planted_import(tmp_path):
    """The checks read every kind of import: at the top and in a function, absolute and relative."""
    plants = {
        "app/review/plant.py": "def f():\n    from anomascope.app.page.screen import Screen\n",
        "app/plant.py": "from .cli import common\n",
        "app/cli/plant.py": "import anomascope.app.page.layout\n",
        "app/cli/serve.py": "from anomascope.app.page.server import serve\n",  # allowed
        "app/page/runs.py": "from anomascope.app.review.app import ReviewApp\nfrom anomascope.app import viewer\n",
        "app/page/plant.py": "from ..cli.common import CommandError\n",
        "engine/plant.py": "from anomascope.app import bundles\n",
        "storage/sub/plant.py": "def f():\n    import anomascope.app.bundles\n",
    }
    for name, source in plants.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    assert wing_violations(tmp_path) == [
        "app/cli/plant.py:1 (cli) imports anomascope.app.page.layout (page)",
        "app/page/plant.py:1 (page) imports anomascope.app.cli.common (cli)",
        "app/page/plant.py:1 (page) imports anomascope.app.cli.common.CommandError (cli)",
        "app/plant.py:1 (shared) imports anomascope.app.cli (cli)",
        "app/plant.py:1 (shared) imports anomascope.app.cli.common (cli)",
        "app/review/plant.py:2 (review) imports anomascope.app.page.screen (page)",
        "app/review/plant.py:2 (review) imports anomascope.app.page.screen.Screen (page)",
    ]
    assert layer_violations(tmp_path) == [
        "engine/plant.py:1 imports anomascope.app",
        "engine/plant.py:1 imports anomascope.app.bundles",
        "storage/sub/plant.py:2 imports anomascope.app.bundles",
    ]
