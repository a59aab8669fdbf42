"""Reader accounts: names with argon2id password hashes (argon2-cffi). An account is disabled, never
deleted, because the audit trail names its reader. Failed sign-ins in a row are counted; past a limit
the account is locked until an administrator unlocks it."""

from __future__ import annotations

import enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, inspect, select

from .db import Database, StorageError
from .db import exists as db_exists
from .models import User
from .records import audit

HASHER = PasswordHasher()  # argon2id, the library's RFC 9106 parameters
MIN_PASSWORD_LENGTH = 8
# Verified when the name is unknown, so a wrong name takes as long as a wrong password.
_DECOY_HASH = HASHER.hash("not a password of anyone")


def add_user(db: Database, name: str, password: str, actor: str) -> User:
    name = _checked_name(name)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StorageError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    with db.transaction() as session:
        if session.scalar(select(User).where(User.name == name)) is not None:
            raise StorageError(f"a reader named {name!r} already exists")
        user = User(name=name, password_hash=HASHER.hash(password), active=True)
        session.add(user)
        session.flush()
        audit(session, actor, "user.add", f"user:{user.id}", name=name)
        return user


def disable_user(db: Database, name: str, actor: str) -> User:
    with db.transaction() as session:
        user = _named(session, name)
        user.active = False
        audit(session, actor, "user.disable", f"user:{user.id}", name=name)
        return user


def unlock_user(db: Database, name: str, actor: str) -> User:
    with db.transaction() as session:
        user = _named(session, name)
        user.locked, user.failed_sign_ins = False, 0
        audit(session, actor, "user.unlock", f"user:{user.id}", name=name)
        return user


def _named(session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise StorageError(f"no reader named {name!r}")
    return user


class AccountStatus(enum.Enum):
    UNKNOWN = "unknown"
    ACTIVE = "active"
    DISABLED = "disabled"
    LOCKED = "locked"


def account_status(db: Database, name: str) -> AccountStatus:
    """Whether `name` may use the page now: asked on every request, so a disabled account stops at once."""
    with db.sessions() as session:
        state = session.execute(select(User.active, User.locked).where(User.name == name)).first()
    if state is None:
        return AccountStatus.UNKNOWN
    active, locked = state
    if not active:
        return AccountStatus.DISABLED
    return AccountStatus.LOCKED if locked else AccountStatus.ACTIVE


def note_failed_sign_in(db: Database, name: str, address: str, lock_after: int) -> None:
    """Count a wrong password for the account `name` (nothing for an unknown name); the `lock_after`-th in
    a row locks it, audited with the client's address."""
    with db.transaction() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            return
        user.failed_sign_ins += 1
        if user.failed_sign_ins >= lock_after and not user.locked:
            user.locked = True
            audit(
                session,
                "anomascope",
                "user.lock",
                f"user:{user.id}",
                name=name,
                failed_sign_ins=user.failed_sign_ins,
                address=address,
            )


def note_signed_in(db: Database, name: str) -> None:
    """A right password ends the run of failures."""
    with db.transaction() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is not None and user.failed_sign_ins:
            user.failed_sign_ins = 0


def list_users(db: Database) -> list[User]:
    with db.sessions() as session:
        return list(session.scalars(select(User).order_by(User.name)))


def has_accounts(db: Database) -> bool:
    """Whether any reader account exists: the page then asks everyone to sign in."""
    with db.sessions() as session:
        return bool(session.scalar(select(func.count()).select_from(User)))


def accounts_at(url: str) -> bool:
    """Whether the database at `url` holds reader accounts, asked without creating the database, its folder
    or its schema: a server that will refuse to start must leave nothing behind."""
    if not db_exists(url):
        return False
    db = Database(url, migrate=False)
    try:
        with db.engine.connect() as connection:
            if not inspect(connection).has_table("users"):
                return False
        return has_accounts(db)
    finally:
        db.dispose()


def authenticate(db: Database, name: str, password: str) -> bool:
    """True for an active, unlocked reader's right password; every other answer takes as long."""
    with db.sessions() as session:
        user = session.scalar(select(User).where(User.name == name))
    try:
        HASHER.verify(user.password_hash if user else _DECOY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and user.active and not user.locked


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or not name.isprintable():
        raise StorageError("a reader's name must be printable text, not empty")
    if len(name) > 128:
        raise StorageError(f"a reader's name may have at most 128 characters, not {len(name):,}")
    return name
