"""Sign-in that a disabled reader cannot outlive, and that a password guesser cannot run at full speed:
waits per account and per client address, a lock after repeated failures, audited, said in one sentence."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from anomascope.app.cli import main
from anomascope.app.signin import SignInGuard, SignInPolicy, SignInRefused
from anomascope.storage import AuditEvent, Database, User, add_user
from tests.app.test_accounts import SAMPLE, _served
from tests.app.test_browser import CHROMIUM, CHROMIUM_FLAGS

PASSWORD = "a long enough password"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guarded(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'guard.sqlite'}")
    add_user(db, "carol", PASSWORD, "admin")
    clock = Clock()
    yield db, SignInGuard(db, SignInPolicy(), clock), clock
    db.dispose()


def _user(db: Database) -> User:
    with db.sessions() as session:
        return session.scalar(select(User).where(User.name == "carol"))


def test_failures_past_the_free_ones_wait_longer_each_time(guarded):
    db, guard, clock = guarded
    for _ in range(3):  # the free failures answer at once
        assert guard.sign_in("carol", "wrong password", "10.0.0.1") is False
    assert guard.sign_in("carol", "wrong password", "10.0.0.1") is False  # the 4th: 1 s from now on
    with pytest.raises(SignInRefused, match=r"Too many failed sign-ins for 'carol': try again in 1 s") as refused:
        guard.sign_in("carol", PASSWORD, "10.0.0.1")  # refused unchecked, even with the right password
    assert refused.value.status_code == 429
    clock.now += 1
    assert guard.sign_in("carol", "wrong password", "10.0.0.2") is False  # 5th: the wait doubles, whatever address
    with pytest.raises(SignInRefused, match="try again in 2 s"):
        guard.sign_in("carol", PASSWORD, "10.0.0.3")
    clock.now += 2
    assert guard.sign_in("carol", PASSWORD, "10.0.0.1") is True
    assert _user(db).failed_sign_ins == 0  # a success ends the run
    assert guard.sign_in("carol", "wrong password", "10.0.0.1") is False  # and the free failures are back
    assert guard.sign_in("carol", "wrong password", "10.0.0.1") is False


def test_the_account_locks_after_ten_failures_in_a_row_and_says_so(guarded, capsys):
    db, guard, clock = guarded
    policy = guard.policy
    for failure in range(1, policy.lock_after + 1):
        assert guard.sign_in("carol", f"guess {failure}", "192.0.2.7") is False
        clock.now += policy.wait_s(failure, policy.free_per_account)
    user = _user(db)
    assert user.locked and user.failed_sign_ins == policy.lock_after and user.active
    with db.sessions() as session:
        [lock] = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.lock")).all()
    assert lock.target == f"user:{user.id}" and lock.details["address"] == "192.0.2.7"
    assert lock.details["failed_sign_ins"] == policy.lock_after
    with pytest.raises(SignInRefused, match="The account 'carol' is locked after 10 failed sign-ins") as refused:
        guard.sign_in("carol", PASSWORD, "192.0.2.8")  # the right password no longer opens it
    assert refused.value.status_code == 403
    capsys.readouterr()
    assert main(["users", "list", "--db", db.url]) == 0
    assert '"locked": true, "failed_sign_ins": 10' in capsys.readouterr().out
    assert main(["users", "unlock", "carol", "--db", db.url]) == 0
    clock.now += policy.longest_wait_s  # the wait after the last failure still runs
    assert guard.sign_in("carol", PASSWORD, "192.0.2.8") is True
    with db.sessions() as session:
        assert session.scalars(select(AuditEvent.action).order_by(AuditEvent.id.desc())).first() == "user.unlock"


def test_one_address_guessing_many_names_waits(guarded):
    _, guard, _ = guarded
    for n in range(guard.policy.free_per_address + 1):
        assert guard.sign_in(f"reader {n}", "guess", "198.51.100.9") is False
    with pytest.raises(SignInRefused, match="Too many failed sign-ins from this address: try again in 1 s"):
        guard.sign_in("carol", PASSWORD, "198.51.100.9")
    assert guard.sign_in("carol", PASSWORD, "198.51.100.10") is True  # another address is not held up


def test_a_bad_lockout_setting_is_one_sentence(monkeypatch):
    monkeypatch.setenv("ANOMASCOPE_SIGNIN_LOCK_AFTER", "none")
    with pytest.raises(ValueError, match="ANOMASCOPE_SIGNIN_LOCK_AFTER='none': give a whole number of at least 1"):
        SignInPolicy.from_env()


@pytest.fixture
def server(tmp_path, monkeypatch):
    url, app, demo = _served(tmp_path, monkeypatch, accounts=True)
    yield url, app
    demo.close()


def _sign_in(client: httpx.Client, url: str, password: str = PASSWORD) -> httpx.Response:
    return client.post(f"{url}/login", data={"username": "dr login", "password": password})


def test_disabling_an_account_ends_its_sessions_at_once(server, capsys):
    url, app = server
    with httpx.Client() as client:
        assert _sign_in(client, url).status_code == 200
        assert client.get(f"{url}/config").status_code == 200
        assert main(["users", "disable", "dr login", "--db", app.db.url]) == 0  # another process, as an admin would
        assert client.get(f"{url}/config").status_code == 401
        upload = client.post(f"{url}/gradio_api/upload", files={"files": ("x.jpg", SAMPLE.read_bytes())})
        assert upload.status_code == 401
        assert "signin-name" in client.get(f"{url}/").text  # the page asks to sign in again
        assert _sign_in(client, url).status_code == 400  # and the password no longer opens it
    with app.db.sessions() as session:
        actions = [(e.actor, e.action) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions[-1][1] == "user.disable"  # nothing was done under the account after it was disabled


def test_guessing_over_http_is_slowed_with_a_sentence(server):
    url, _ = server
    with httpx.Client() as client:
        for _ in range(4):
            assert _sign_in(client, url, "wrong password").status_code == 400
        refused = _sign_in(client, url)
        assert refused.status_code == 429
        assert refused.json()["detail"] == "Too many failed sign-ins for 'dr login': try again in 1 s."
        assert client.get(f"{url}/config").status_code == 401


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)")
def test_the_sign_in_form_says_why_it_refuses(server):
    from playwright.sync_api import sync_playwright

    url, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.fill("#signin-name", "dr login")
        for _ in range(4):
            page.fill("#signin-password", "wrong password")
            page.click("#signin-button")
            page.wait_for_function("document.querySelector('#signin-message').textContent !== ''")
            assert page.text_content("#signin-message") == "Wrong name or password."
            page.evaluate("document.querySelector('#signin-message').textContent = ''")
        page.fill("#signin-password", PASSWORD)
        page.click("#signin-button")
        page.wait_for_function("document.querySelector('#signin-message').textContent !== ''")
        assert page.text_content("#signin-message") == "Too many failed sign-ins for 'dr login': try again in 1 s."
        page.wait_for_timeout(1100)
        page.fill("#signin-password", PASSWORD)
        page.click("#signin-button")
        page.wait_for_function("window.anomascope && window.anomascope.viewer.nv", timeout=60_000)
        browser.close()


def test_guesses_sent_all_at_once_wait_like_a_series(guarded):
    from concurrent.futures import ThreadPoolExecutor

    _, guard, _ = guarded

    def attempt(n: int) -> str:
        try:
            return str(guard.sign_in("carol", f"guess {n}", "203.0.113.5"))
        except SignInRefused:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(12)))
    assert answers.count("False") == guard.policy.free_per_account + 1 and answers.count("refused") == 8
