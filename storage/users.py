"""Reader accounts: names with argon2id password hashes (argon2-cffi). An account is disabled, never
deleted, because the audit trail names its reader."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from .db import Database, StorageError
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
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise StorageError(f"no reader named {name!r}")
        user.active = False
        audit(session, actor, "user.disable", f"user:{user.id}", name=name)
        return user


def list_users(db: Database) -> list[User]:
    with db.sessions() as session:
        return list(session.scalars(select(User).order_by(User.name)))


def has_accounts(db: Database) -> bool:
    """Whether any reader account exists: the page then asks everyone to sign in."""
    with db.sessions() as session:
        return bool(session.scalar(select(func.count()).select_from(User)))


def authenticate(db: Database, name: str, password: str) -> bool:
    """True for an active reader's right password; every other answer takes as long."""
    with db.sessions() as session:
        user = session.scalar(select(User).where(User.name == name))
    try:
        HASHER.verify(user.password_hash if user else _DECOY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and user.active


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or not name.isprintable():
        raise StorageError("a reader's name must be printable text, not empty")
    if len(name) > 128:
        raise StorageError(f"a reader's name may have at most 128 characters, not {len(name):,}")
    return name
