"""Database models (SQLAlchemy 2). Everything a reader saves; nothing about how it was computed."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .db import StorageError


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_uuid() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class Case(Base):
    """An image or volume as it was opened: identified by the hash of its content."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    source_name: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(32))
    modality: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list] = mapped_column(JSON)  # [slices, channels, H, W]
    spacing: Mapped[list | None] = mapped_column(JSON, nullable=True)
    metadata_json: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    runs: Mapped[list[InferenceRun]] = relationship(back_populates="case", order_by="InferenceRun.id")
    annotations: Mapped[list[Annotation]] = relationship(back_populates="case", order_by="Annotation.id")


class InferenceRun(Base):
    """One method run on one case, with the threshold the reader settled on and how it was chosen."""

    __tablename__ = "inference_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    bundle_id: Mapped[str] = mapped_column(String(128))
    weights_hash: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold_method: Mapped[str | None] = mapped_column(String(64), nullable=True)
    image_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    case: Mapped[Case] = relationship(back_populates="runs")
    annotations: Mapped[list[Annotation]] = relationship(back_populates="run")


class Annotation(Base):
    """A mask a reader saved. A correction is a new row (version + 1, same lineage); rows never change."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("lineage", "version", name="uq_annotation_lineage_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lineage: Mapped[str] = mapped_column(String(32), index=True, default=new_uuid)
    version: Mapped[int] = mapped_column(Integer, default=1)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("inference_runs.id", ondelete="RESTRICT"), nullable=True)
    slice_index: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the mask covers every slice
    mask_shape: Mapped[list] = mapped_column(JSON)
    mask_data: Mapped[bytes] = mapped_column(LargeBinary)  # zlib(packbits(mask)): lossless
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)  # the threshold this mask was made at
    threshold_method: Mapped[str | None] = mapped_column(String(64), nullable=True)
    author: Mapped[str] = mapped_column(String(128))
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    case: Mapped[Case] = relationship(back_populates="annotations")
    run: Mapped[InferenceRun | None] = relationship(back_populates="annotations")


class ThresholdPreset(Base):
    """A named site threshold for one bundle, with where the value came from. A new value for the same
    name is its next version; rows never change (a database trigger refuses it)."""

    __tablename__ = "threshold_presets"
    __table_args__ = (UniqueConstraint("bundle_id", "name", "version", name="uq_preset_bundle_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bundle_id: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)
    value: Mapped[float] = mapped_column(Float)
    provenance: Mapped[str] = mapped_column(Text)
    readout: Mapped[str | None] = mapped_column(String(32), nullable=True)
    criterion: Mapped[str | None] = mapped_column(String(64), nullable=True)  # e.g. "sensitivity=0.9"
    figure: Mapped[float | None] = mapped_column(Float, nullable=True)  # the criterion's value at the threshold
    n_cases: Mapped[int | None] = mapped_column(Integer, nullable=True)
    session: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TuningSession(Base):
    """A threshold-tuning session: one reader stepping through a worklist with one bundle's read-out."""

    __tablename__ = "tuning_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uuid)  # named by the presets it makes
    bundle_id: Mapped[str] = mapped_column(String(128))
    readout: Mapped[str] = mapped_column(String(32))
    reader: Mapped[str] = mapped_column(String(128))
    worklist: Mapped[dict] = mapped_column(JSON)  # where the cases came from, and their names in order
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    entries: Mapped[list[TuningEntry]] = relationship(back_populates="session", order_by="TuningEntry.id")


class TuningEntry(Base):
    """One save in a tuning session: the case at `position`, the mask version saved and its threshold.
    Saved again, a case gets a new entry; the newest entry of a position is the reader's last word."""

    __tablename__ = "tuning_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("tuning_sessions.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"))
    annotation_id: Mapped[int] = mapped_column(ForeignKey("annotations.id", ondelete="RESTRICT"))
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    session: Mapped[TuningSession] = relationship(back_populates="entries")
    annotation: Mapped[Annotation] = relationship()


class User(Base):
    """A reader who signs in to the page; disabled, never deleted (the audit trail names them)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, with its salt and parameters
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0)  # in a row; a success sets it back to 0
    locked: Mapped[bool] = mapped_column(Boolean, default=False)  # after too many failures, until unlocked
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Append-only record of who did what and when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


@event.listens_for(Base, "before_insert", propagate=True)
def _check_lengths(mapper, _connection, target) -> None:
    """Text longer than its column is refused here, before any backend sees it: PostgreSQL would refuse
    it and SQLite would store it, and both must give the reader the same sentence."""
    for attribute in mapper.column_attrs:
        limit = getattr(attribute.columns[0].type, "length", None)
        value = getattr(target, attribute.key, None)
        if limit and isinstance(value, str) and len(value) > limit:
            raise StorageError(
                f"the {attribute.key.replace('_', ' ')} is {len(value):,} characters long; at most "
                f"{limit} are stored, so nothing was saved"
            )


class ImmutableRowError(RuntimeError):
    """Raised when code tries to change a row the record keeps for good."""


def _refuse_change(mapper, connection, target):
    raise ImmutableRowError(f"{type(target).__name__} rows are never changed or deleted; add a new one instead")


# The record: rows kept for good. The database refuses to change, delete, replace or truncate them
# (migrations 0004-0008); every table is either here or the accounts table, which a test holds.
APPEND_ONLY = (Case, InferenceRun, Annotation, ThresholdPreset, TuningSession, TuningEntry, AuditEvent)

for _model in APPEND_ONLY:
    event.listen(_model, "before_update", _refuse_change)
    event.listen(_model, "before_delete", _refuse_change)
