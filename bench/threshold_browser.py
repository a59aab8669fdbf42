"""How long a threshold change takes in the review page's viewer, in a real headless chromium.

Each change is a slider `input` event; the time runs from the event to the next animation frame
after the viewer has re-thresholded the map and redrawn the mask (`lastThresholdMs` in
app/static/viewer.js). No server round trip is involved. Writes one JSON file naming the machine.

    python bench/threshold_browser.py --out bench/results-threshold-browser.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomascope.app.bundles import discover  # noqa: E402
from anomascope.app.page.layout import build_app  # noqa: E402
from anomascope.app.review.app import ReviewApp  # noqa: E402
from anomascope.storage import Database  # noqa: E402

SAMPLE = ROOT / "assets" / "samples" / "ISIC_0024311.jpg"


def machine() -> str:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return f"{platform.node()} · {cpu} · {torch.get_num_threads()} threads"


def photo_at(scale: int, folder: Path) -> Path:
    if scale == 1:
        return SAMPLE
    image = Image.open(SAMPLE)
    path = folder / f"photo-x{scale}.png"
    image.resize((image.width * scale, image.height * scale), Image.BICUBIC).save(path)
    return path


def measure(page, changes: int) -> list[float]:
    low, high = page.evaluate(
        "[window.anomascope.viewer.scene.threshold.min, window.anomascope.viewer.scene.threshold.max]"
    )
    times = []
    for k in range(changes):
        value = low + (high - low) * (0.2 + 0.6 * (k % 20) / 20)
        page.evaluate(
            """(value) => new Promise((done) => {
            const slider = document.querySelector('.as-threshold');
            slider.value = value;
            slider.dispatchEvent(new Event('input'));
            requestAnimationFrame(() => requestAnimationFrame(done));
        })""",
            value,
        )
        times.append(page.evaluate("window.anomascope.viewer.lastThresholdMs"))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-threshold-browser.json")
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    folder = Path(tempfile.mkdtemp(prefix="anomascope-bench-"))
    app = ReviewApp(
        Database(f"sqlite:///{folder / 'bench.sqlite'}"),
        discover([ROOT / "assets" / "models"]),
        folder / "cases",
        torch.device("cpu"),
    )
    demo = build_app(app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    results = {"machine": machine(), "browser": "", "viewport": [1500, 1300], "cases": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            results["browser"] = f"chromium {browser.version} (software WebGL)"
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_function("window.anomascope && window.anomascope.viewer.nv", timeout=60_000)
            for scale in args.scales:
                shown = page.evaluate("window.anomascope.viewer.shown")
                if not page.locator("#open-panel.open").count():  # it folds away once a case is open
                    page.locator("#open-panel button[aria-label='Toggle Sidebar']").click()
                    page.wait_for_selector("#open-panel.open")
                clear = page.locator("#upload button[aria-label*='Clear'], #upload button[aria-label*='Remove']")
                if clear.count():
                    clear.first.click()
                page.locator("#upload input[type=file]").set_input_files(str(photo_at(scale, folder)))
                page.wait_for_function(f"window.anomascope.viewer.shown > {shown}", timeout=120_000)
                page.locator("#run").click()
                page.wait_for_function(f"window.anomascope.viewer.shown > {shown + 1}", timeout=300_000)
                times = measure(page, args.changes)
                dims = page.evaluate("window.anomascope.viewer.scene.dims")
                results["cases"].append(
                    {
                        "image": f"{dims[0]}x{dims[1]} px photo, SPR map",
                        "changes": len(times),
                        "median_ms": statistics.median(times),
                        "p95_ms": float(np.percentile(times, 95)),
                        "max_ms": max(times),
                    }
                )
                print(results["cases"][-1])
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(folder, ignore_errors=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
