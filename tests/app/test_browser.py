"""End to end in a real headless browser (Playwright driving Debian's chromium, which .ci/run installs).

Every save is read back from the database and compared voxel for voxel with the mask the viewer
showed at the moment of the click, and with what the reader's strokes should have made of it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from anomascope.app.bundles import discover
from anomascope.app.pacs import Pacs
from anomascope.app.review.app import ReviewApp
from anomascope.app.viewer import from_viewer
from anomascope.engine.io import load_dicom_sources
from anomascope.storage import Database, TuningSession, case_history, decode_mask, list_cases, tuning_entries
from tests.app.test_dicom_export import oblique_series, read_back
from tests.app.test_pacs import CREDENTIALS, DICOMWEB_URL, fetched, files_of, needs_pacs, sent_uids
from tests.conftest import make_dicom, write_dicom

ROOT = Path(__file__).parents[2]
SAMPLES = ROOT / "assets" / "samples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed (CI installs it)"
)


# The save message itself: the box around it also shows Gradio's progress ("queue: 1/1 | 0.1s") over the
# previous message while a save is on its way, which a wait for a new message would take for one.
SAVE_STATUS = "document.querySelector('#save-status [data-testid=markdown]').innerText"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from anomascope.app.page.layout import build_app

    tmp = tmp_path_factory.mktemp("browser")
    db = Database(f"sqlite:///{tmp / 'browser.sqlite'}")
    pacs = Pacs(DICOMWEB_URL, *CREDENTIALS) if DICOMWEB_URL else None
    app = ReviewApp(db, discover([ROOT / "assets" / "models"]), tmp / "cases", torch.device("cpu"), pacs=pacs)
    with pytest.MonkeyPatch.context() as environment:  # the tuning tests' worklists lie in pytest's folders
        environment.setenv("ANOMASCOPE_WORKLIST_ROOTS", str(tmp_path_factory.getbasetemp()))
        demo = build_app(app)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", app
    demo.close()


@pytest.fixture
def reader_page(served):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium must be installed in CI"
    url, app = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        errors = []
        page.on("pageerror", lambda e: errors.append(f"{e}: {e.stack}"))
        page.goto(url)
        page.wait_for_function("window.anomascope && window.anomascope.viewer.nv", timeout=60_000)
        page.locator("#reader input, #reader textarea").first.fill("Dr Playwright")
        yield Reader(page, app)
        assert not errors, f"errors in the page's scripts: {errors}"
        browser.close()


class Reader:
    """What a reader does on the page, and what the viewer shows, read from the page itself."""

    def __init__(self, page, app: ReviewApp):
        self.page, self.app = page, app

    def _await_scene(self, before: int) -> None:
        """Wait for the server's scene: a tuning session's next case may first be shown from its preview,
        which cannot be saved until the server's scene of it has come."""
        self.page.wait_for_function(
            f"window.anomascope.viewer.shown > {before} && !(window.anomascope.viewer.scene || {{}}).preview",
            timeout=120_000,
        )
        self.settled()

    def settled(self) -> None:
        """Wait until the viewer stops moving: the open panel folds away over 0.3 s once a case opens, and
        a stroke aimed at a moving image would land beside its target."""
        self.page.wait_for_function(
            "() => new Promise((done) => { const at = () => document.querySelector('.as-main canvas')"
            ".getBoundingClientRect().left; const before = at(); setTimeout(() => done(at() === before), 150); })",
            timeout=30_000,
        )

    def open_panel(self) -> None:
        """Unfold the panel cases are opened from (it folds away once a case is open)."""
        if not self.page.locator("#open-panel.open").count():
            self.page.locator("#open-panel button[aria-label='Toggle Sidebar']").click()
            self.page.wait_for_selector("#open-panel.open")
        self.settled()

    def reopen(self, name: str) -> None:
        """Open a case from the worklist by its file name."""
        self.open_panel()
        before = self.shown()
        self.page.locator("#worklist").get_by_text(name).filter(visible=True).first.click()
        self._await_scene(before)

    def shown(self) -> int:
        return self.page.evaluate("window.anomascope.viewer.shown")

    def open(self, path: Path) -> None:
        self.open_panel()
        before = self.shown()
        clear = self.page.locator("#upload button[aria-label*='Clear'], #upload button[aria-label*='Remove']")
        if clear.count():
            clear.first.click()
        self.page.locator("#upload input[type=file]").set_input_files(str(path))
        self._await_scene(before)

    def run(self) -> None:
        before = self.shown()
        self.page.locator("#run").click()
        self._await_scene(before)
        self.page.wait_for_function("window.anomascope.viewer.scene && window.anomascope.viewer.scene.threshold")

    def scene(self) -> dict | None:
        return self.page.evaluate("window.anomascope.viewer.scene")

    def mask(self) -> np.ndarray:
        """The mask on screen as (S, H, W), read from NiiVue's drawing bitmap."""
        width, height, slices = self.scene()["dims"]
        flat = np.array(self.page.evaluate("window.anomascope.mask()"), dtype=bool)
        return from_viewer(flat.reshape((width, height, slices), order="F"))

    def stroke(self, tool: str, points: list[tuple[int, int]]) -> None:
        """Drag the tool through image points (column, row) on the slice on screen."""
        self.page.locator(f".as-viewer [data-tool={tool}]").click()
        edits = self.page.evaluate("window.anomascope.viewer.cursor")
        screen = [self.page.evaluate(f"window.anomascope.screenPoint({x}, {y})") for x, y in points]
        self.page.mouse.move(*screen[0])
        self.page.mouse.down()
        for point in screen[1:]:
            self.page.mouse.move(*point, steps=8)
        self.page.mouse.up()
        self.page.wait_for_function(f"window.anomascope.viewer.cursor > {edits}")
        self.page.locator(".as-viewer [data-tool=navigate]").click()

    def set_threshold(self, value: float) -> None:
        self.page.once("dialog", lambda dialog: dialog.accept())  # "discard your edits?"
        box = self.page.locator(".as-threshold-number")
        box.fill(f"{value:.6g}")
        box.dispatch_event("change")

    def save(self, expect: str = "Saved annotation") -> None:
        """Click Save and wait for this save's own message: the one before it may say `expect` too (every
        successful save names its annotation and version, so two are never the same)."""
        before = self.status()
        self.page.locator("#save").click()
        self.page.wait_for_function(
            f"([text, before]) => {{ const now = {SAVE_STATUS}; return now.includes(text) && now !== before; }}",
            arg=[expect, before],
            timeout=60_000,
        )

    def status(self) -> str:
        return self.page.evaluate(SAVE_STATUS)


def _latest(app: ReviewApp, source_name: str):
    [case] = [c for c in list_cases(app.db) if c.source_name == source_name]
    annotation = case_history(app.db, case.id).annotations[-1]
    mask = decode_mask(annotation.mask_shape, annotation.mask_data)
    return annotation, mask.reshape(-1, *mask.shape[-2:])


def _heatmap_on_disk(app: ReviewApp, reader: Reader) -> np.ndarray:
    """The map the server wrote for the viewer, read back with nibabel (independent of the browser)."""
    token = reader.scene()["token"]
    return from_viewer(np.asarray(nib.load(app.volumes.root / token / "heatmap.nii.gz").dataobj))


def test_photo_threshold_strokes_eraser_reopen(reader_page, tmp_path):
    reader, app, page = reader_page, reader_page.app, reader_page.page
    assert "Single-user mode" in page.locator("#mode").inner_text()  # no accounts: the page says so
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    reader.open(bad)
    assert "broken.png: not a readable PNG" in page.locator("#message").inner_text()
    assert reader.scene() is None and "Traceback" not in page.content()

    photo = SAMPLES / "ISIC_0024311.jpg"
    reader.open(photo)
    # A method with a restoration (the photo opens with P-PII, which has none): its pane follows the zoom.
    _pick(page, "#method", "SPR · ham10000-denoiser")
    reader.run()
    scene = reader.scene()
    assert scene["heatmap"] and scene["restoration"]
    # The viewer's thresholded mask is exactly the map at the threshold (computed here from the file).
    heatmap = _heatmap_on_disk(app, reader)
    thresholded = reader.mask()
    np.testing.assert_array_equal(thresholded, heatmap >= np.float32(scene["threshold"]["value"]))
    assert 0 < thresholded.sum() < thresholded.size

    # The restoration beside the image follows its zoom.
    page.locator(".as-zoom-in").click()
    zooms = page.evaluate(
        "[window.anomascope.viewer.nv.scene.pan2Dxyzmm[3], window.anomascope.viewer.restoration.scene.pan2Dxyzmm[3]]"
    )
    assert zooms[0] == pytest.approx(1.25) and zooms[1] == pytest.approx(zooms[0])
    page.locator(".as-zoom-fit").click()

    # 1. A brush stroke after Run: saved = thresholded mask + the stroke.
    reader.stroke("brush", [(5, 140), (60, 140)])
    shown = reader.mask()
    reader.save()
    annotation, saved = _latest(app, photo.name)
    np.testing.assert_array_equal(saved, shown)
    added = shown & ~thresholded
    assert (thresholded <= shown).all() and added.sum() > 20
    rows, cols = np.nonzero(added[0])
    assert rows.min() >= 130 and rows.max() <= 149 and cols.max() <= 70  # where the stroke went
    assert annotation.version == 1 and annotation.threshold == pytest.approx(scene["threshold"]["value"])

    # Undo and redo (keys) act on the mask on screen.
    page.locator(".as-main canvas").hover()
    page.keyboard.press("Control+z")
    np.testing.assert_array_equal(reader.mask(), thresholded)
    page.keyboard.press("Control+y")
    np.testing.assert_array_equal(reader.mask(), shown)

    # 2. An eraser stroke through the lesion: saved = the mask on screen, less what was erased.
    before = reader.mask()
    ys, xs = np.nonzero(before[0])
    centre = (int(np.median(xs)), int(np.median(ys)))
    reader.stroke("eraser", [(centre[0] - 30, centre[1]), (centre[0] + 30, centre[1])])
    shown = reader.mask()
    reader.save()
    annotation, saved = _latest(app, photo.name)
    np.testing.assert_array_equal(saved, shown)
    assert (shown <= before).all() and shown.sum() < before.sum()
    assert annotation.version == 2

    # 3. A threshold change, then a stroke: the mask restarts from the map at the new threshold.
    lineage = annotation.lineage
    low, high = scene["threshold"]["min"], scene["threshold"]["max"]
    new_threshold = float(f"{low + 0.6 * (high - low):.6g}")  # as the reader types it
    reader.set_threshold(new_threshold)
    restarted = reader.mask()
    np.testing.assert_array_equal(restarted, heatmap >= np.float32(new_threshold))
    reader.stroke("brush", [(150, 10), (190, 10)])
    shown = reader.mask()
    reader.save()
    annotation, saved = _latest(app, photo.name)
    np.testing.assert_array_equal(saved, shown)
    assert (restarted <= shown).all() and (shown & ~restarted).sum() > 20
    assert annotation.threshold == pytest.approx(new_threshold, rel=1e-6)
    assert annotation.threshold_method == "manual" and annotation.lineage == lineage and annotation.version == 3
    if os.environ.get("ANOMASCOPE_SCREENSHOT"):  # the README's picture: a corrected mask just saved
        page.screenshot(path=os.environ["ANOMASCOPE_SCREENSHOT"], full_page=True)

    # 4. Another (bad) file clears every view of this case.
    reader.open(bad)
    assert reader.scene() is None
    assert page.locator("#score").inner_text().strip() == ""
    assert page.evaluate("document.querySelector('.as-title').textContent") == "No image open"

    # 5. Reopen from the worklist: the latest saved mask is on screen; a correction is version 4.
    reader.reopen("ISIC_0024311.jpg")
    np.testing.assert_array_equal(reader.mask(), saved)
    reader.stroke("eraser", [(150, 10), (190, 10)])
    shown = reader.mask()
    reader.save()
    annotation, stored = _latest(app, photo.name)
    np.testing.assert_array_equal(stored, shown)
    assert annotation.lineage == lineage and annotation.version == 4
    assert (shown <= saved).all() and shown.sum() < saved.sum()
    assert "saved version 4 of 4" in page.locator("#mask-source").inner_text()

    # 6. Compare with version 1: its outline is drawn over the mask on screen, with their overlap.
    first = _saved_version(app, photo.name, 1)
    before = page.evaluate("window.anomascope.viewer.comparisons")
    page.locator("#compare input").first.click()
    page.get_by_role("option", name="version 1", exact=True).click()
    page.wait_for_function(f"window.anomascope.viewer.comparisons > {before}")
    width, height, slices = reader.scene()["dims"]
    drawn = np.array(page.evaluate("Array.from(window.anomascope.viewer.compareVolume.img)"))
    drawn = from_viewer(drawn.reshape((width, height, slices), order="F")) > 0
    padded = np.pad(first, ((0, 0), (1, 1), (1, 1)))
    interior = first & padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    np.testing.assert_array_equal(drawn, first & ~interior)
    assert _overlap_text(page) == _overlap(reader.mask(), first)
    reader.stroke("brush", [(100, 20), (120, 20)])  # the figures follow the reader's edits
    assert _overlap_text(page) == _overlap(reader.mask(), first)


def _saved_version(app: ReviewApp, source_name: str, version: int) -> np.ndarray:
    [case] = [c for c in list_cases(app.db) if c.source_name == source_name]
    [annotation] = [a for a in case_history(app.db, case.id).annotations if a.version == version]
    mask = decode_mask(annotation.mask_shape, annotation.mask_data)
    return mask.reshape(-1, *mask.shape[-2:])


def _overlap(shown: np.ndarray, other: np.ndarray) -> tuple[str, int, int]:
    """Dice (as the page rounds it), voxels only on screen, voxels only in the other version."""
    both = int((shown & other).sum())
    dice = 2 * both / (shown.sum() + other.sum())
    return f"{dice:.3f}", int((shown & ~other).sum()), int((other & ~shown).sum())


def _overlap_text(page) -> tuple[str, int, int]:
    text = page.locator(".as-compare").inner_text()
    dice, added, dropped = re.search(
        r"Dice with the mask on screen ([\d.]+); the mask on screen adds (\d+) px "
        r"and drops (\d+)",
        text,
    ).groups()
    return dice, int(added), int(dropped)


def _dicom_series(folder: Path, slices: int = 8) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    uid = "1.2.826.0.1.3680043.8.498.1"
    for k in range(slices):
        pixels = (rng.normal(100, 20, (40, 48)).clip(0, 4000)).astype(np.uint16)
        write_dicom(
            folder / f"IM{k:03d}.dcm",
            make_dicom(
                pixels,
                SeriesInstanceUID=uid,
                ImagePositionPatient=[0.0, 0.0, 3.0 * k],
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                InstanceNumber=k + 1,
                PixelSpacing=[0.8, 0.8],
            ),
        )
    archive = shutil.make_archive(str(folder), "zip", folder)
    return Path(archive)


@pytest.mark.parametrize("name", ["anatomical.nii", "series.zip", "CT_small.dcm"])
def test_volume_stroke_lands_on_the_slice_on_screen(reader_page, tmp_path, name):
    reader, app, page = reader_page, reader_page.app, reader_page.page
    path = _dicom_series(tmp_path / "series") if name == "series.zip" else SAMPLES / name
    reader.open(path)
    page.locator("#method input").first.click()
    page.get_by_role("option", name="DIA", exact=False).first.click()
    reader.run()
    scene = reader.scene()
    width, height, slices = scene["dims"]
    assert scene["threshold"]["image_level"] and "flagged" in page.locator(".as-verdict").inner_text().lower()
    t = scene["threshold"]
    normals = np.array(t["normal_scores"])
    below = int(np.floor(100 * (normals < t["image_score"]).mean() + 0.5))
    alarms = int(np.floor(100 * (normals >= t["value"]).mean() + 0.5))
    assert (  # what the cut-off means, in the normal images' terms (issue 33)
        f"higher than {below}% of the {len(normals)} normal validation images; this threshold would flag "
        f"{alarms}% of them" in page.locator(".as-verdict").inner_text()
    )

    target = min(slices - 1, slices // 2 + 2)
    page.locator(".as-main canvas").hover()
    for _ in range(target - page.evaluate("window.anomascope.currentSlice()")):
        page.keyboard.press("ArrowUp")
    assert page.evaluate("window.anomascope.currentSlice()") == target
    # The dissolved image beside it shows the same slice, and says what it is.
    assert page.locator(".as-restoration-caption").inner_text().startswith("Dissolved image")
    assert page.evaluate("window.anomascope.viewer.restoration.scene.crosshairPos[2]") == pytest.approx(
        page.evaluate("window.anomascope.viewer.nv.scene.crosshairPos[2]")
    )
    reader.stroke("brush", [(width // 4, height // 2), (3 * width // 4, height // 2)])
    shown = reader.mask()
    assert shown[target].sum() > 0 and shown.sum() == shown[target].sum()

    if scene["image"] and "CT" in scene["title"]:  # the chest X-ray model on a CT: the reader must acknowledge
        reader.save(expect="read the model warning")
        page.locator("#acknowledge input").check()
    reader.save()
    source = next(c.source_name for c in list_cases(app.db) if c.source_name.startswith(Path(name).stem))
    annotation, saved = _latest(app, source)
    assert saved.shape == (slices, height, width)
    np.testing.assert_array_equal(saved, shown)
    assert annotation.threshold is not None and annotation.threshold_method

    # A threshold change (the verdict moves, the drawn mask stays), then the eraser on that slice.
    new_threshold = float(f"{scene['threshold']['max'] + 1:.6g}")  # above every score
    reader.set_threshold(new_threshold)
    assert "not flagged" in page.locator(".as-verdict").inner_text()
    np.testing.assert_array_equal(reader.mask(), shown)
    reader.stroke("eraser", [(width // 4, height // 2), (width // 2, height // 2)])
    erased = reader.mask()
    assert (erased <= shown).all() and erased.sum() < shown.sum()
    reader.save()
    annotation, saved = _latest(app, source)
    np.testing.assert_array_equal(saved, erased)
    assert annotation.version == 2 and annotation.threshold == pytest.approx(new_threshold)

    # Reopen from the worklist: the saved volume is on screen, and a correction is version 3.
    reader.open(SAMPLES / "ISIC_0024318.jpg")
    reader.reopen(source)
    np.testing.assert_array_equal(reader.mask(), erased)
    reader.stroke("brush", [(width // 4, height // 3), (3 * width // 4, height // 3)])
    corrected = reader.mask()
    reader.save()  # no run on a reopened case, so no model warning to acknowledge
    annotation, saved = _latest(app, source)
    np.testing.assert_array_equal(saved, corrected)
    assert annotation.version == 3 and (corrected & ~erased).sum() > 0


def _wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector)?.innerText || '').includes(text)",
        arg=[selector, text],
        timeout=120_000,
    )


def test_a_three_case_tuning_session(reader_page, tmp_path):
    """Step through three cases, correct one, save each, propose a site threshold and save it; the next
    case offers it, and every stored mask is the one shown."""
    reader, app, page = reader_page, reader_page.app, reader_page.page
    worklist = tmp_path / "worklist"
    worklist.mkdir()
    for name in ("ISIC_0024311.jpg", "ISIC_0024318.jpg", "ISIC_0024320.jpg"):
        shutil.copy(SAMPLES / name, worklist / name)
    reader.open_panel()
    page.get_by_text("Threshold-tuning session").click()  # the accordion starts closed
    page.locator("#tuning-source input, #tuning-source textarea").first.fill(str(worklist))
    before = reader.shown()
    page.locator("#tuning-start").click()
    reader._await_scene(before)
    _wait_text(page, "#tuning-progress", "case 1 of 3")

    shown = []
    for step in range(3):
        if step:
            page.wait_for_function("window.anomascope.viewer.upcoming !== null", timeout=120_000)
            before = reader.shown()
            if step == 1:
                page.locator("#tuning-next").click()
            else:
                page.locator(".as-main canvas").hover()
                page.keyboard.press("Alt+ArrowRight")  # the key steps on too
            reader._await_scene(before)
            _wait_text(page, "#tuning-progress", f"case {step + 1} of 3")
            # It was put on screen from the preview loaded ahead, and the server's scene kept its volumes.
            assert page.evaluate("window.anomascope.viewer.heatVolume.name").startswith("preview-")
        page.wait_for_function("window.anomascope.viewer.scene && window.anomascope.viewer.scene.threshold")
        if step == 1:
            reader.stroke("brush", [(20, 20), (80, 20)])  # the reader's correction on the second case
        shown.append(reader.mask())
        reader.save("Recorded for the tuning session")
    last = reader.shown()
    page.locator("#tuning-next").click()  # past the last case: said, and nothing reloads
    _wait_text(page, "#message", "case 3 of 3 is the last case of this session")
    assert reader.shown() == last

    names = sorted(p.name for p in worklist.iterdir())
    for name, mask in zip(names, shown, strict=True):
        np.testing.assert_array_equal(_latest(app, name)[1], mask)
    assert shown[1][0, 20, 30:70].all()  # the stroke is in what was saved
    with app.db.sessions() as db_session:
        session_id = db_session.scalar(select(func.max(TuningSession.id)))
    entries = tuning_entries(app.db, session_id)
    assert sorted(entries) == [0, 1, 2]  # every save is the session's entry for its case
    for position, mask in enumerate(shown):
        entry_mask = decode_mask(entries[position][1].mask_shape, entries[position][1].mask_data)
        np.testing.assert_array_equal(entry_mask.reshape(mask.shape), mask)

    page.get_by_role("tab", name="Tuning summary").click()
    page.locator("#summarise").click()
    _wait_text(page, "#summary", "Proposed site threshold")
    proposed = float(re.search(r"Proposed site threshold ([-\d.e+]+)", page.locator("#summary").inner_text())[1])
    page.locator("#preset-name input, #preset-name textarea").first.fill("site session")
    page.locator("#save-preset").click()
    _wait_text(page, "#preset-status", "Saved site threshold")

    fresh = tmp_path / "fresh.png"
    from PIL import Image

    Image.open(SAMPLES / "ISIC_0024311.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(fresh)
    reader.open(fresh)
    reader.run()
    presets = reader.scene()["threshold"]["presets"]
    assert presets["site session (site, v1)"] == pytest.approx(proposed, rel=1e-3)
    # Where the preset came from is shown beside the method: the session, its criterion and the reader.
    _wait_text(page, "#method-info", "site threshold site session (v1)")
    assert "tuning session" in page.locator("#method-info").inner_text()


def test_a_tuning_session_goes_on_past_a_case_that_cannot_be_opened(reader_page, tmp_path):
    reader, page = reader_page, reader_page.page
    worklist = tmp_path / "worklist"
    worklist.mkdir()
    for name in ("ISIC_0024311.jpg", "ISIC_0024318.jpg"):
        shutil.copy(SAMPLES / name, worklist / name)
    # A tilde in the name, as in the path the reason quotes: the message shows both as written.
    (worklist / "ISIC_0024311~broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot the rest of a picture")
    reader.open_panel()
    page.get_by_text("Threshold-tuning session").click()
    page.locator("#tuning-source input, #tuning-source textarea").first.fill(str(worklist))
    before = reader.shown()
    page.locator("#tuning-start").click()
    reader._await_scene(before)
    _wait_text(page, "#tuning-progress", "case 1 of 3")
    first = reader.shown()

    page.locator("#tuning-next").click()
    _wait_text(page, "#message", "case 2 of 3: ISIC_0024311~broken.png could not be opened")
    assert "case 2 of 3" in page.locator("#tuning-progress").inner_text()
    assert reader.shown() == first  # the case before stays on screen
    page.locator("#tuning-next").click()
    reader._await_scene(first)
    _wait_text(page, "#tuning-progress", "case 3 of 3: ISIC_0024318.jpg")


def _pick(page, dropdown: str, method: str) -> None:
    page.locator(f"{dropdown} input").first.click()
    page.get_by_role("option", name=method, exact=False).first.click()


def test_two_methods_side_by_side_in_linked_viewers(reader_page):
    """A second method beside the first: the same zoom and pan in both, each pane with its own threshold and
    mask, and after swapping the methods the saved mask is the second method's, recorded with its run."""
    reader, app, page = reader_page, reader_page.app, reader_page.page
    reader.open(SAMPLES / "ISIC_0024320.jpg")
    _pick(page, "#method", "SPR")
    reader.run()
    first_mask = reader.mask()
    page.get_by_text("Compare two methods side by side").click()  # the accordion starts closed
    _pick(page, "#second-method", "PPII")
    before = page.evaluate("window.anomascope.viewer.seconds")
    page.locator("#second-run").click()
    page.wait_for_function(f"window.anomascope.viewer.seconds > {before} && window.anomascope.viewer.secondSpec")
    token = reader.scene()["token"]
    second_map = from_viewer(np.asarray(nib.load(app.volumes.root / token / "second-heatmap.nii.gz").dataobj))
    width, height, slices = reader.scene()["dims"]

    def second_mask() -> np.ndarray:
        flat = np.array(page.evaluate("window.anomascope.secondMask()"), dtype=bool)
        return from_viewer(flat.reshape((width, height, slices), order="F"))

    start = page.evaluate("window.anomascope.viewer.secondThreshold")
    np.testing.assert_array_equal(second_mask(), second_map >= np.float32(start))
    np.testing.assert_array_equal(reader.mask(), first_mask)  # the first pane's mask is left alone

    # Linked: zoom with the buttons, and with Ctrl+wheel over the second pane.
    page.locator(".as-zoom-in").click()
    page.locator(".as-second-box canvas").hover()
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    views = "window.anomascope.viewer"
    main_pan = page.evaluate(f"{views}.nv.scene.pan2Dxyzmm")
    assert main_pan[3] == pytest.approx(1.25 * 1.1)
    assert page.evaluate(f"{views}.second.scene.pan2Dxyzmm") == pytest.approx(main_pan)
    assert page.evaluate(f"{views}.second.scene.crosshairPos") == pytest.approx(
        page.evaluate(f"{views}.nv.scene.crosshairPos")
    )
    page.evaluate("window.anomascope.setWindow([20, 180])")  # what the Window menu does
    assert page.evaluate(f"[{views}.second.volumes[0].cal_min, {views}.second.volumes[0].cal_max]") == [20, 180]

    # The second pane's own threshold moves its mask only.
    chosen = float(f"{np.quantile(second_map, 0.97):.6g}")
    box = page.locator(".as-second-threshold-number")
    box.fill(f"{chosen:.6g}")
    box.dispatch_event("change")
    np.testing.assert_array_equal(second_mask(), second_map >= np.float32(chosen))
    np.testing.assert_array_equal(reader.mask(), first_mask)

    # Swap: the second method's mask, at its threshold, is what the reader corrects and saves.
    before = reader.shown()
    page.locator("#second-swap").click()
    reader._await_scene(before)
    page.wait_for_function("window.anomascope.viewer.secondSpec")
    shown = reader.mask()
    np.testing.assert_array_equal(shown, second_map >= np.float32(chosen))
    reader.stroke("brush", [(20, 20), (60, 20)])
    corrected = reader.mask()
    reader.save()
    assert "the mask came from PPII" in reader.status()
    annotation, saved = _latest(app, "ISIC_0024320.jpg")
    np.testing.assert_array_equal(saved, corrected)
    runs = {run.id: run.method for run in case_history(app.db, annotation.case_id).runs}
    assert runs[annotation.run_id] == "ppii" and annotation.threshold == pytest.approx(chosen)


@needs_pacs
def test_a_series_from_the_pacs_goes_back_as_the_mask_on_screen(reader_page, tmp_path):
    """Search the PACS, open a series from it, correct the mask, save, send: the Segmentation the PACS then
    holds is the mask the reader saw."""
    reader, app, page = reader_page, reader_page.app, reader_page.page
    path = oblique_series(tmp_path / "series")
    sources = load_dicom_sources(path)
    study = sources[0].StudyInstanceUID
    app.pacs.store(files_of(path))
    reader.open_panel()
    page.get_by_text(f"PACS: {DICOMWEB_URL}").click()  # the accordion starts closed
    page.locator("#pacs-text input, #pacs-text textarea").first.fill("test pat")
    page.locator("#pacs-search").click()
    page.wait_for_function("() => document.querySelector('#message').innerText.includes('studies found')")
    # Gradio draws the rows as a grid (its <table> is a hidden copy for sizing); click the row's first cell.
    page.locator("#pacs-studies [role=row]", has_text=study).locator("[role=gridcell]").first.click()
    page.wait_for_function("() => document.querySelector('#pacs-series input').value.includes('CT series 3')")
    before = reader.shown()
    page.locator("#pacs-open").click()
    reader._await_scene(before)
    _pick(page, "#method", "lgg-ppii")
    reader.run()
    reader.stroke("brush", [(4, 4), (20, 12)])
    shown = reader.mask()
    page.locator("#acknowledge input").check()  # a brain MR model on a CT: the reader must acknowledge
    reader.save()
    page.locator("#pacs-send").click()
    page.wait_for_function(
        "() => document.querySelector('#save-status').innerText.includes('Sent annotation')", timeout=120_000
    )
    [case] = [c for c in list_cases(app.db) if c.source_name == sources[0].SeriesInstanceUID]
    annotation = case_history(app.db, case.id).annotations[-1]
    np.testing.assert_array_equal(decode_mask(annotation.mask_shape, annotation.mask_data), shown)
    segmentation = hd.seg.Segmentation.from_dataset(fetched(app.pacs, study, sent_uids(app, annotation.id)[0]))
    np.testing.assert_array_equal(read_back(segmentation, sources, len(shown)), shown)


def test_a_reopened_case_is_saved_with_its_own_threshold(reader_page, tmp_path):
    """Issue 33: the viewer kept the case shown before's threshold, and the next save recorded it."""
    from PIL import Image

    reader, app, page = reader_page, reader_page.app, reader_page.page
    photo = SAMPLES / "ISIC_0024320.jpg"
    first, second = tmp_path / "kept-threshold.png", tmp_path / "shown-between.png"
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(first)  # pixels no other test opens
    Image.open(photo).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(second)
    reader.open(first)
    _pick(page, "#method", "SPR · ham10000-denoiser")
    reader.run()
    reader.save()
    saved, _ = _latest(app, first.name)
    reader.open(second)
    _pick(page, "#method", "PPII · ham10000-ppii")
    reader.run()
    assert reader.scene()["threshold"]["value"] != saved.threshold
    reader.reopen(first.name)
    reader.save()
    again, _ = _latest(app, first.name)
    assert again.version == 2
    assert (again.threshold, again.threshold_method) == (saved.threshold, saved.threshold_method)


def test_the_threshold_box_keeps_the_last_valid_value_and_clamps_to_the_map(reader_page):
    """Issue 33: an empty entry became 0 and masked the whole image; -5 and 1e9 were taken as they were."""
    reader, page = reader_page, reader_page.page
    reader.open(SAMPLES / "ISIC_0024311.jpg")
    _pick(page, "#method", "SPR · ham10000-denoiser")
    reader.run()
    t = reader.scene()["threshold"]
    box, note = page.locator(".as-threshold-number"), page.locator(".as-threshold-note")

    def typed(text: str) -> float:
        box.fill(text)
        box.dispatch_event("change")
        return page.evaluate("window.anomascope.viewer.threshold")

    start = page.evaluate("window.anomascope.viewer.threshold")
    shown = reader.mask()
    assert typed("") == start and note.inner_text().startswith("Not a number: the threshold stays at")
    np.testing.assert_array_equal(reader.mask(), shown)  # nothing re-thresholded
    assert float(box.input_value()) == pytest.approx(start, rel=1e-5)  # the box shows the kept value again
    assert typed("-5") == t["min"] and "-5 is outside this map's range" in note.inner_text()
    assert typed("1e9") == t["max"] and "1000000000 is outside this map's range" in note.inner_text()
    middle = (t["min"] + t["max"]) / 2
    assert typed(f"{middle:.6g}") == pytest.approx(middle, rel=1e-5) and note.inner_text() == ""


def test_opening_a_case_resets_every_reading_and_the_tool(reader_page):
    """Issue 33: "Slice 16 / 25" and a score stayed under a single PNG, and the eraser stayed active."""
    reader, page = reader_page, reader_page.page
    reader.open(SAMPLES / "anatomical.nii")
    location = page.locator(".as-location")
    slices = reader.scene()["dims"][2]
    assert location.inner_text().strip() == f"Slice {slices // 2 + 1} / {slices}"
    page.locator(".as-main canvas").click()  # the crosshair there: its voxel joins the reading
    page.wait_for_function("document.querySelector('.as-location').textContent.includes(' x ')")
    page.locator(".as-viewer [data-tool=eraser]").click()
    reader.open(SAMPLES / "ISIC_0024311.jpg")
    assert location.inner_text().strip() == ""  # a single photo: no slice, and no score without a map
    assert page.evaluate("window.anomascope.viewer.tool") == "navigate"
    assert page.locator(".as-viewer [data-tool=navigate]").get_attribute("class") == "as-active"


def test_a_reader_who_draws_before_any_run_saves_a_manual_annotation(reader_page, tmp_path):
    from PIL import Image

    reader, app = reader_page, reader_page.app
    photo = tmp_path / "drawn-by-hand.png"
    Image.open(SAMPLES / "ISIC_0024318.jpg").rotate(90, expand=True).save(photo)  # pixels no other test opens
    reader.open(photo)
    reader.stroke("brush", [(30, 40), (90, 40)])
    shown = reader.mask()
    assert shown.sum() > 0
    reader.save()
    assert "drawn by hand (no method run)" in reader.status()
    annotation, stored = _latest(app, photo.name)
    np.testing.assert_array_equal(stored, shown)
    assert annotation.run_id is None and annotation.threshold is None


@pytest.mark.parametrize("width, height", [(1920, 1080), (1440, 900)])
def test_the_image_and_its_tools_fit_one_screen(served, width, height):
    """Issue 33.8: once a case is open, the image, the threshold, the correction tools and Save are all on
    one screen without scrolling; the panel it was opened from folds away, and unfolded, its worklist shows
    every column whole."""
    from playwright.sync_api import sync_playwright

    url, app = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        page.wait_for_function("window.anomascope && window.anomascope.viewer.nv", timeout=60_000)
        assert page.evaluate("window.anomascope.viewer.nv.opts.loadingText") == "No image open"
        reader = Reader(page, app)
        reader.open(SAMPLES / "ISIC_0024320.jpg")
        reader.run()
        reader.settled()
        assert not page.locator("#open-panel.open").count()
        assert page.evaluate("window.scrollY") == 0
        for selector in (
            ".as-main canvas",
            ".as-threshold",
            ".as-threshold-number",
            "[data-tool=brush]",
            "[data-tool=eraser]",
            "[data-tool=fill]",
            ".as-undo",
            ".as-zoom-fit",
            "#method",
            "#run",
            "#save",
        ):
            box = page.locator(selector).first.bounding_box()
            assert box is not None, selector
            assert box["x"] >= 0 and box["y"] >= 0, selector
            assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, selector
        image = page.locator(".as-main canvas").bounding_box()
        assert image["height"] >= 0.55 * height and image["width"] >= 0.35 * width  # the image gets the room

        reader.open_panel()
        cut = page.evaluate(
            "() => [...document.querySelectorAll('#worklist th, #worklist td')]"
            ".filter((cell) => cell.getBoundingClientRect().width > 0)"
            ".filter((cell) => cell.scrollWidth > cell.clientWidth + 1).map((cell) => cell.innerText)"
        )
        assert cut == []
        browser.close()


def test_ctrl_left_drag_pans_and_leaves_the_crosshair(reader_page):
    """Issue 33.9: Ctrl+left drag moved the crosshair; the README promises a pan."""
    reader, page = reader_page, reader_page.page
    reader.open(SAMPLES / "ISIC_0024311.jpg")
    _pick(page, "#method", "SPR · ham10000-denoiser")
    reader.run()
    reader.settled()
    crosshair = page.evaluate("Array.from(window.anomascope.viewer.nv.scene.crosshairPos)")
    box = page.locator(".as-main canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.keyboard.down("Control")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 80, y + 40, steps=8)
    page.mouse.up()
    page.keyboard.up("Control")
    pan = page.evaluate("Array.from(window.anomascope.viewer.nv.scene.pan2Dxyzmm)")
    assert pan[:2] != [0, 0]
    assert page.evaluate("Array.from(window.anomascope.viewer.nv.scene.crosshairPos)") == crosshair
    assert page.evaluate("window.anomascope.viewer.restoration.scene.pan2Dxyzmm[0]") == pytest.approx(pan[0])


def _pixel(page, point: list[float]) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    shot = page.screenshot(clip={"x": point[0] - 1, "y": point[1] - 1, "width": 3, "height": 3})
    return np.asarray(Image.open(BytesIO(shot)).convert("RGB"), dtype=int)[1, 1]


def test_low_scores_leave_the_image_undimmed_and_captions_name_the_method(reader_page):
    """Issue 33.9: the heatmap's dark low end dimmed the whole image; the restoration's caption said DIA's
    "dissolved image" for every method."""
    reader, app, page = reader_page, reader_page.app, reader_page.page
    reader.open(SAMPLES / "ISIC_0024318.jpg")
    _pick(page, "#method", "SPR · ham10000-denoiser")
    reader.run()
    reader.settled()
    assert page.locator(".as-restoration-caption").inner_text() == "Pseudo-healthy restoration (SPR)"
    heat = _heatmap_on_disk(app, reader)[0]
    low, high = reader.scene()["heatmap"]["window"]
    threshold = reader.scene()["threshold"]["value"]
    faint = (heat > low) & (heat < low + 0.15 * (high - low)) & (heat < threshold)
    strong = (heat > low + 0.6 * (high - low)) & (heat < threshold)
    strong = strong if strong.any() else heat > low + 0.6 * (high - low)
    points = {}
    for name, where in (("faint", faint), ("strong", strong)):
        rows, cols = np.nonzero(where)
        assert rows.size, name
        points[name] = page.evaluate(f"window.anomascope.screenPoint({int(cols[0])}, {int(rows[0])})")
    overlaid = {name: _pixel(page, point) for name, point in points.items()}
    page.evaluate("window.anomascope.viewer.nv.setOpacity(1, 0)")  # the image alone
    bare = {name: _pixel(page, point) for name, point in points.items()}
    assert np.abs(overlaid["faint"] - bare["faint"]).max() <= 2  # a low score leaves the image as it is
    assert np.abs(overlaid["strong"] - bare["strong"]).max() > 20  # a high one is drawn
