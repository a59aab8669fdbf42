"""Who may use the page, asked on every request when reader accounts exist.

Gradio keeps a signed-in reader's session as a token in memory, and asks the account only at sign-in. Two
doors stay open with that alone, and this module closes them:
- a disabled account keeps its sessions: `ReaderGate` looks the account up on every request and ends all
  of its sessions the moment it is disabled, so Gradio answers that request as it answers anyone's;
- passwords can be guessed at full speed: `SignInGuard` makes a client wait after repeated failures, per
  account and per client address, refuses attempts while it waits without checking them, and locks the
  account (in the database, audited) after `lock_after` failures in a row.

The page's own sign-in form (static/signin.html) replaces Gradio's, which shows one fixed text for every
refusal; this one shows the server's sentence: wrong password, wait, or locked.
"""

from __future__ import annotations

import contextvars
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from anomascope.app.viewer import STATIC
from anomascope.storage import (
    AccountStatus,
    Database,
    account_status,
    authenticate,
    note_failed_sign_in,
    note_signed_in,
)

SIGN_IN_PAGE = STATIC / "signin.html"
# The client a sign-in attempt comes from: Gradio hands the password check the name and password only.
client_address: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="unknown")


def _limit(variable: str, default: int) -> int:
    text = os.environ.get(variable, str(default))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable}={text!r}: give a whole number of at least 1")
    return value


@dataclass(frozen=True)
class SignInPolicy:
    """How many failures are free, how the wait grows after them, and when an account locks."""

    lock_after: int = 10  # failures in a row for one account
    free_per_account: int = 3
    free_per_address: int = 10  # readers of one clinic may share an address
    longest_wait_s: float = 60.0
    forget_after_s: float = 15 * 60.0  # a quiet address starts again

    @classmethod
    def from_env(cls) -> SignInPolicy:
        return cls(lock_after=_limit("ANOMASCOPE_SIGNIN_LOCK_AFTER", cls.lock_after))

    def wait_s(self, failures: int, free: int) -> float:
        """1 s after the first failure past the free ones, doubling, up to `longest_wait_s`."""
        if failures <= free:
            return 0.0
        return min(self.longest_wait_s, 2.0 ** (failures - free - 1))


@dataclass
class _Failures:
    count: int
    last: float


class SignInRefused(HTTPException):
    """An attempt refused before its password was checked; `detail` is the sentence the reader sees."""

    def __init__(self, status_code: int, sentence: str):
        super().__init__(status_code=status_code, detail=sentence)


class SignInGuard:
    """The password check behind Gradio's sign-in, slowed and locked as `SignInPolicy` says."""

    def __init__(self, db: Database, policy: SignInPolicy, clock: Callable[[], float] = time.monotonic):
        self.db = db
        self.policy = policy
        self.clock = clock
        self.accounts: dict[str, _Failures] = {}  # by name, known or not, so waits do not reveal who exists
        self.addresses: dict[str, _Failures] = {}
        self.lock = threading.Lock()  # sign-ins are checked in Gradio's worker threads, several at once

    async def check(self, name: str, password: str) -> bool:
        """Gradio's `auth`: a coroutine, so that hashing the password never holds up the event loop."""
        return await run_in_threadpool(self.sign_in, name, password, client_address.get())

    def sign_in(self, name: str, password: str, address: str) -> bool:
        with self.lock:
            self._refuse_if_waiting(name, address)
            # Counted before the password is checked, so that attempts sent all at once wait like a series.
            self._count(self.accounts, name)
            self._count(self.addresses, address)
        if account_status(self.db, name) is AccountStatus.LOCKED:
            self._uncount(name, address)  # not a guess: the password was never checked
            raise SignInRefused(
                403,
                f"The account {name!r} is locked after {self.policy.lock_after} failed sign-ins in a row; "
                "ask an administrator to unlock it (anomascope users unlock NAME).",
            )
        if authenticate(self.db, name, password):
            with self.lock:
                self.accounts.pop(name, None)
            self._uncount(name, address)
            note_signed_in(self.db, name)
            return True
        note_failed_sign_in(self.db, name, address, self.policy.lock_after)
        return False

    def _refuse_if_waiting(self, name: str, address: str) -> None:
        now = self.clock()
        for failures, free, whose in (
            (self.accounts.get(name), self.policy.free_per_account, f"for {name!r}"),
            (self.addresses.get(address), self.policy.free_per_address, "from this address"),
        ):
            if failures is None:
                continue
            left = failures.last + self.policy.wait_s(failures.count, free) - now
            if left > 0:
                raise SignInRefused(
                    429,
                    f"Too many failed sign-ins {whose}: try again in {math.ceil(left)} s.",
                )

    def _uncount(self, name: str, address: str) -> None:
        with self.lock:
            for table, key in ((self.accounts, name), (self.addresses, address)):
                if key in table:
                    table[key].count -= 1

    def _count(self, table: dict[str, _Failures], key: str) -> None:
        now = self.clock()
        for stale in [k for k, f in table.items() if now - f.last > self.policy.forget_after_s]:
            del table[stale]  # keeps the tables small whatever a client sends
        failures = table.setdefault(key, _Failures(0, now))
        failures.count += 1
        failures.last = now


class ReaderGate:
    """ASGI middleware in front of Gradio's app: every request's signed-in account is looked up, a disabled
    one's sessions end there, and a reader who is not signed in gets the page's sign-in form."""

    def __init__(self, app, db: Database):
        self.app = app
        self.db = db
        self.sign_in_page = SIGN_IN_PAGE.read_text()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        client = scope.get("client")
        client_address.set(client[0] if client else "unknown")
        gradio = scope["app"]  # Starlette puts the application itself in the scope before its middleware
        reader = await self._signed_in(gradio, _cookies(scope))
        if reader is None and scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/":
            return await HTMLResponse(self.sign_in_page)(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _signed_in(self, gradio, cookies: dict[str, str]) -> str | None:
        """The reader whose session the request carries, once the account is known to be usable."""
        token = cookies.get(f"access-token-{gradio.cookie_id}") or cookies.get(
            f"access-token-unsecure-{gradio.cookie_id}"
        )
        reader = gradio.tokens.get(token)
        if reader is None:
            return None
        status = await run_in_threadpool(account_status, self.db, reader)
        if status in (AccountStatus.DISABLED, AccountStatus.UNKNOWN):
            for other, owner in list(gradio.tokens.items()):
                if owner == reader:
                    gradio.tokens.pop(other, None)
            return None
        return reader


def _cookies(scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:  # a malformed cookie header is no session at all
                return {}
    return {name: morsel.value for name, morsel in jar.items()}
