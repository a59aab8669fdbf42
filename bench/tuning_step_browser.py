"""How long the reader waits for the next case of a threshold-tuning session, in a real headless chromium.

The time runs from the click on Next (what Alt+→ clicks) to the first animation frame after the viewer
has drawn the next case's image, map and mask: the reader's wait, server and browser together. The frame
after that one is reported too: by then the rest of the page (the server's reply) has been updated. The reader
"works" --think seconds on each case first, as the page expects (the next cases are scored meanwhile).
Target (issue 33): a prefetched case on screen within 300 ms. Writes one JSON file naming the machine.

    python bench/tuning_step_browser.py --out bench/results-tuning-step-browser.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from threshold_browser import machine  # noqa: E402
from tuning_step import worklist  # noqa: E402

from anomascope.app.bundles import discover  # noqa: E402
from anomascope.app.review.app import ReviewApp  # noqa: E402
from anomascope.storage import Database  # noqa: E402

# From the click to the first animation frame that draws the next case (the viewer draws it synchronously,
# so that frame shows it), and to the frame after it, by when the page's other updates have landed too.
STEP = """() => new Promise((done) => {
    const before = window.anomascope.viewer.shown;
    const started = performance.now();
    document.querySelector('#tuning-next').click();
    const poll = () => {
        if (window.anomascope.viewer.shown > before) {
            const drawn = performance.now() - started;
            requestAnimationFrame(() => done([drawn, performance.now() - started]));
        } else {
            requestAnimationFrame(poll);
        }
    };
    requestAnimationFrame(poll);
})"""


def served(folder: Path, cases: Path) -> tuple[object, str]:
    import os

    from anomascope.app.page.layout import build_app

    app = ReviewApp(
        Database(f"sqlite:///{folder / 'bench.sqlite'}"),
        discover([ROOT / "assets" / "models"]),
        folder / "cases",
        torch.device("cpu"),
    )
    os.environ["ANOMASCOPE_WORKLIST_ROOTS"] = str(cases.parent)
    demo = build_app(app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}"


def start_session(page, cases: Path, method: str) -> None:
    page.locator("#reader input, #reader textarea").first.fill("bench")
    page.locator("#method input").first.click()
    page.get_by_role("option", name=method, exact=False).first.click()
    page.get_by_text("Threshold-tuning session").click()
    page.locator("#tuning-source input, #tuning-source textarea").first.fill(str(cases))
    shown = page.evaluate("window.anomascope.viewer.shown")
    page.locator("#tuning-start").click()
    try:
        page.wait_for_function(f"window.anomascope.viewer.shown > {shown}", timeout=120_000)
    except Exception:
        raise SystemExit(f"the session did not start: {page.locator('#message').inner_text()}") from None
    page.wait_for_timeout(500)  # the panel folds away


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-tuning-step-browser.json")
    parser.add_argument("--think", type=float, default=3.0, help="seconds the reader spends on each case")
    parser.add_argument("--method", default="PPII · ham10000-ppii", help="the picker's label (a prefix will do)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    folder = Path(tempfile.mkdtemp(prefix="anomascope-bench-"))
    cases = worklist(folder / "worklist")
    demo, url = served(folder, cases)
    results = {"machine": machine(), "browser": "", "viewport": [1440, 900], "method": args.method}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            results["browser"] = f"chromium {browser.version} (software WebGL)"
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            page.wait_for_function("window.anomascope && window.anomascope.viewer.nv", timeout=60_000)
            start_session(page, cases, args.method)
            times, settled = [], []
            for _ in range(len(list(cases.iterdir())) - 1):
                time.sleep(args.think)
                drawn, after = page.evaluate(STEP)
                times.append(drawn)
                settled.append(after)
                print(f"step {len(times)}: on screen after {drawn:.0f} ms, the next frame at {after:.0f} ms")
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(folder, ignore_errors=True)
    results.update(
        steps=len(times),
        think_seconds=args.think,
        median_ms=statistics.median(times),
        p90_ms=float(np.percentile(times, 90)),
        max_ms=max(times),
        next_frame_median_ms=statistics.median(settled),
        next_frame_max_ms=max(settled),
        target_ms=300,
    )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
