"""Reader identity and the page as a server: accounts, sign-in, the audit actor, single-user mode,
upload limits and the temporary files patient images pass through."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import httpx
import pytest
import torch
from sqlalchemy import select

from anomascope.app.bundles import discover
from anomascope.app.cli import is_loopback, main
from anomascope.app.review.app import ReviewApp
from anomascope.storage import (
    AuditEvent,
    Case,
    Database,
    StorageError,
    User,
    accounts_at,
    add_user,
    authenticate,
    case_history,
    has_accounts,
)
from tests.app.test_browser import CHROMIUM, CHROMIUM_FLAGS, Reader, _free_port

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "assets" / "samples" / "ISIC_0024311.jpg"


def test_users_command_adds_lists_and_disables(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["users", "add", "dr grey", "--password-stdin", "--db", url]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "dr brief", "--password-stdin", "--db", url]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    db = Database(url)
    assert has_accounts(db) and authenticate(db, "dr grey", "correct horse battery")
    assert not authenticate(db, "dr grey", "wrong horse battery") and not authenticate(db, "nobody", "x" * 10)
    with pytest.raises(StorageError, match="already exists"):
        add_user(db, "dr grey", "another password", "test")
    assert main(["users", "disable", "dr grey", "--db", url]) == 0
    assert not authenticate(db, "dr grey", "correct horse battery")  # disabled: kept, but cannot sign in
    capsys.readouterr()
    assert main(["users", "list", "--db", url]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["name"] == "dr grey" and listed["active"] is False
    with db.sessions() as session:  # the hash, never the password, is stored
        assert "correct horse" not in str(session.execute(select(AuditEvent.details)).all())
        stored = session.execute(select(User.password_hash)).scalar()
    assert stored.startswith("$argon2id$")


def test_serve_refuses_the_network_without_accounts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANOMASCOPE_DATA_DIR", str(tmp_path / "data"))
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "add reader accounts first" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written: no data folder, no database
    (tmp_path / "data").mkdir()
    db = Database(f"sqlite:///{tmp_path / 'data' / 'anomascope.sqlite'}")
    assert not accounts_at(db.url)  # a database without accounts is refused the same way
    add_user(db, "dr net", "a long enough password", "test")
    assert accounts_at(db.url) and not accounts_at(f"sqlite:///{tmp_path / 'elsewhere' / 'none.sqlite'}")
    assert not (tmp_path / "elsewhere").exists()
    monkeypatch.setenv("ANOMASCOPE_SIGNIN_LOCK_AFTER", "0")
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "ANOMASCOPE_SIGNIN_LOCK_AFTER='0': give a whole number of at least 1" in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")


def _served(tmp_path: Path, monkeypatch, accounts: bool):
    from anomascope.app.page.server import serve

    monkeypatch.setenv("ANOMASCOPE_MAX_BYTES", str(2**20))
    db = Database(f"sqlite:///{tmp_path / 'accounts.sqlite'}")
    if accounts:
        add_user(db, "dr login", "a long enough password", "test")
    app = ReviewApp(db, discover([ROOT / "assets" / "models"]), tmp_path / "cases", torch.device("cpu"))
    port = _free_port()
    return f"http://127.0.0.1:{port}", app, serve(app, "127.0.0.1", port, block=False)


@pytest.fixture
def signed_in_server(tmp_path, monkeypatch):
    url, app, demo = _served(tmp_path, monkeypatch, accounts=True)
    yield url, app
    demo.close()


def test_the_page_and_its_files_need_a_signed_in_reader(signed_in_server):
    url, _ = signed_in_server
    viewer_js = f"{url}/gradio_api/file={ROOT / 'app' / 'static' / 'viewer.js'}"
    assert httpx.get(f"{url}/config").status_code == 401
    assert httpx.get(viewer_js).status_code in (401, 403)
    assert httpx.post(f"{url}/login", data={"username": "dr login", "password": "wrong"}).status_code >= 400
    with httpx.Client() as client:
        assert (
            client.post(f"{url}/login", data={"username": "dr login", "password": "a long enough password"}).status_code
            == 200
        )
        assert client.get(f"{url}/config").status_code == 200
        # Uploads past the limit are refused before they reach the app.
        big = client.post(f"{url}/gradio_api/upload", files={"files": ("big.png", b"\0" * (2**20 + 1))})
        assert big.status_code == 413


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)")
def test_the_signed_in_reader_is_the_audit_actor(signed_in_server):
    from playwright.sync_api import sync_playwright

    url, app = signed_in_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(url)
        page.fill("#signin-name", "dr login")  # the page's own sign-in form (app/static/signin.html)
        page.fill("#signin-password", "a long enough password")
        page.click("#signin-button")
        page.wait_for_function("window.anomascope && window.anomascope.viewer.nv", timeout=60_000)
        box = page.locator("#reader input, #reader textarea").first
        page.wait_for_function("() => document.querySelector('#reader textarea, #reader input').value === 'dr login'")
        assert not box.is_editable()  # the name cannot be typed
        reader = Reader(page, app)
        reader.open(SAMPLE)
        reader.run()
        reader.save()
        browser.close()
    with app.db.sessions() as session:
        [case] = session.scalars(select(Case)).all()
    [annotation] = case_history(app.db, case.id).annotations
    assert annotation.author == "dr login"
    with app.db.sessions() as session:
        actors = {e.action: e.actor for e in session.scalars(select(AuditEvent))}
    assert actors["case.add"] == actors["run.add"] == actors["annotation.add"] == "dr login"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)")
def test_one_slow_reader_does_not_hold_up_another(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    url, app, demo = _served(tmp_path, monkeypatch, accounts=False)
    release = threading.Event()
    open_file = app.open_file

    def slow_for_one(path, reader=""):
        if Path(path).name == "slow.png":
            release.wait(timeout=120)  # a huge upload, or a long inference, on reader A's page
        return open_file(path, reader)

    monkeypatch.setattr(app, "open_file", slow_for_one)
    slow = tmp_path / "slow.png"
    slow.write_bytes((ROOT / "assets" / "samples" / "chest-xray.png").read_bytes())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            pages = [browser.new_page(viewport={"width": 1500, "height": 1300}) for _ in range(2)]
            for page in pages:
                page.goto(url)
                page.wait_for_function("window.anomascope && window.anomascope.viewer.nv", timeout=60_000)
            first, second = Reader(pages[0], app), Reader(pages[1], app)
            pages[0].locator("#upload input[type=file]").set_input_files(str(slow))
            pages[0].wait_for_timeout(1000)  # reader A's event is running (and waiting)
            second.open(SAMPLE)  # reader B's file opens while A's is still being read
            assert second.scene()["title"].startswith("ISIC_0024311.jpg")
            assert first.scene() is None
            release.set()
            pages[0].wait_for_function("window.anomascope.viewer.scene !== null", timeout=60_000)
            browser.close()
    finally:
        release.set()
        demo.close()
