"""End to end in a real headless browser (Playwright driving Debian's chromium, which .ci/run installs)."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from app.bundles import discover
from app.review import ReviewApp
from storage import Database, case_history, list_cases

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (CI installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the page offers assets/samples as demo cases
    from app.ui import build_app

    db = Database(f"sqlite:///{tmp_path / 'browser.sqlite'}")
    demo = build_app(ReviewApp(db, discover([ROOT / "assets" / "models"]), tmp_path / "cases", torch.device("cpu")))
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", db
    demo.close()


def test_review_flow_in_chromium(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM, "chromium must be installed in CI"
    url, db = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(url)
        # A bad file: a readable sentence on the page, no traceback.
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"this is not an image")
        page.locator("#upload input[type=file]").set_input_files(str(bad))
        expect(page.locator("#message")).to_contain_text("broken.png: not a readable PNG", timeout=30_000)
        expect(page.locator("body")).not_to_contain_text("Traceback")

        page.locator("#upload button[aria-label*='Clear'], #upload button[aria-label*='Remove']").first.click()
        page.locator("#upload input[type=file]").set_input_files(str(ROOT / "assets" / "samples" / "ISIC_0024311.jpg"))
        expect(page.locator("#message")).to_contain_text("Opened", timeout=30_000)
        page.locator("#run").click()
        expect(page.locator("#score")).to_contain_text("Image score", timeout=60_000)

        number = page.locator("#threshold input[type=number]")
        moved = float(number.input_value()) * 1.5
        number.fill(f"{moved:.6g}")
        number.press("Enter")
        # What the reader sees before saving: the threshold is now marked as chosen by hand.
        expect(page.locator("#threshold-method input, #threshold-method textarea").first).to_have_value("manual")
        page.locator("#reader input, #reader textarea").first.fill("Dr Playwright")
        page.locator("#save").click()
        expect(page.locator("#message")).to_contain_text("Saved annotation", timeout=30_000)
        # Gradio keeps a connection open, so "network idle" never comes: wait for the images instead.
        expect(page.locator("#overlay img")).to_be_visible()
        page.wait_for_function(
            "document.querySelectorAll('#overlay .progress-text, #overlay .eta-bar, #overlay .wrap.pending').length === 0",
            timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
        if os.environ.get("ANOMASCOPE_SCREENSHOT"):
            shutil.copy(tmp_path / "screenshot.png", os.environ["ANOMASCOPE_SCREENSHOT"])
        browser.close()

    [case] = list_cases(db)
    history = case_history(db, case.id)
    assert [a.author for a in history.annotations] == ["Dr Playwright"]
    assert history.runs[0].threshold == pytest.approx(moved, rel=1e-3)
    assert history.runs[0].threshold_method == "manual"
    # Uncorrected, the saved mask is exactly the thresholded heatmap.
    from engine.inference import score_case
    from engine.io import load_case
    from storage import decode_mask

    catalogue = discover([ROOT / "assets" / "models"])
    predictor = catalogue.predictor(catalogue.best_choice(), torch.device("cpu"))  # the page's preselected method
    heatmap = score_case(predictor, load_case(ROOT / "assets" / "samples" / "ISIC_0024311.jpg")).heatmap[0]
    saved = decode_mask(history.annotations[0].mask_shape, history.annotations[0].mask_data)
    assert saved.shape == heatmap.shape
    assert abs(int(saved.sum()) - int((heatmap >= history.runs[0].threshold).sum())) <= 0.01 * heatmap.size
