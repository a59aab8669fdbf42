"""Persistence: SQLAlchemy models, transactions, accounts and export queries. Never imports engine or app."""

from .db import Database, StorageError, default_url
from .masks import decode_mask, encode_mask
from .models import (
    Annotation,
    AuditEvent,
    Case,
    ImmutableRowError,
    InferenceRun,
    ThresholdPreset,
    TuningEntry,
    TuningSession,
    User,
)
from .records import (
    add_case,
    all_presets,
    annotations_for_export,
    case_history,
    case_summaries,
    latest_presets,
    list_cases,
    record_run,
    save_annotation,
    save_preset,
    start_tuning_session,
    tuning_entries,
)
from .users import add_user, authenticate, disable_user, has_accounts, list_users

__all__ = [
    "Database",
    "StorageError",
    "default_url",
    "encode_mask",
    "decode_mask",
    "Annotation",
    "AuditEvent",
    "Case",
    "ImmutableRowError",
    "InferenceRun",
    "ThresholdPreset",
    "TuningEntry",
    "TuningSession",
    "User",
    "add_case",
    "all_presets",
    "annotations_for_export",
    "case_history",
    "case_summaries",
    "latest_presets",
    "list_cases",
    "record_run",
    "save_annotation",
    "save_preset",
    "start_tuning_session",
    "tuning_entries",
    "add_user",
    "authenticate",
    "disable_user",
    "has_accounts",
    "list_users",
]
