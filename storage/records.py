"""Reading and writing the record: each public write is one transaction, audited in the same one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .db import Database, StorageError
from .masks import decode_mask, encode_mask
from .models import Annotation, AuditEvent, Case, InferenceRun, ThresholdPreset, TuningEntry, TuningSession

VERSION_RETRIES = 5


def audit(session, actor: str, action: str, target: str, **details) -> None:
    session.add(AuditEvent(actor=actor, action=action, target=target, details=details))


def add_case(
    db: Database,
    *,
    content_hash: str,
    source_name: str,
    format: str,
    modality: str,
    shape: list,
    spacing: list | None,
    metadata: dict,
    actor: str,
) -> Case:
    """The case with this content hash, added if it is new (opening the same file twice is one case)."""
    with db.transaction() as session:
        existing = session.scalar(select(Case).where(Case.content_hash == content_hash))
        if existing is not None:
            return existing
        case = Case(
            content_hash=content_hash,
            source_name=source_name,
            format=format,
            modality=modality,
            shape=list(shape),
            spacing=None if spacing is None else list(spacing),
            metadata_json=metadata,
        )
        session.add(case)
        session.flush()
        audit(session, actor, "case.add", f"case:{case.id}", source=source_name)
        return case


def record_run(
    db: Database,
    *,
    case_id: int,
    method: str,
    bundle_id: str,
    weights_hash: str,
    parameters: dict,
    threshold: float | None,
    threshold_method: str | None,
    image_score: float | None,
    seconds: float | None,
    device: str | None,
    actor: str,
) -> InferenceRun:
    with db.transaction() as session:
        run = InferenceRun(
            case_id=case_id,
            method=method,
            bundle_id=bundle_id,
            weights_hash=weights_hash,
            parameters=parameters,
            threshold=threshold,
            threshold_method=threshold_method,
            image_score=image_score,
            seconds=seconds,
            device=device,
        )
        session.add(run)
        session.flush()
        audit(session, actor, "run.add", f"run:{run.id}", case_id=case_id, method=method, bundle_id=bundle_id)
        return run


def save_annotation(
    db: Database,
    *,
    case_id: int,
    mask: np.ndarray,
    author: str,
    run_id: int | None = None,
    slice_index: int | None = None,
    label: str | None = None,
    note: str | None = None,
    corrects: str | None = None,
    threshold: float | None = None,
    threshold_method: str | None = None,
    tuning: tuple[int, int] | None = None,
) -> Annotation:
    """Store a mask. With `corrects` (a lineage id) it becomes the next version of that annotation;
    earlier versions stay as they were. Concurrent corrections each get their own version number.
    With `tuning` (a tuning session's id and the case's position in its worklist) the save is also
    that session's entry for the case, in the same transaction."""
    if not author or not author.strip():
        raise StorageError("an annotation needs the reader's name")
    mask = np.asarray(mask)
    shape, data = encode_mask(mask)
    attempt = 0
    while True:
        attempt += 1
        try:
            with db.transaction() as session:
                version, lineage = 1, None
                if corrects is not None:
                    # Correctors of one lineage queue on its first version's row (PostgreSQL; SQLite's
                    # BEGIN IMMEDIATE already queues every writer), so each reads the latest version after
                    # the one before it committed instead of racing for the same number.
                    session.execute(
                        select(Annotation.id)
                        .where(Annotation.lineage == corrects)
                        .order_by(Annotation.version)
                        .limit(1)
                        .with_for_update()
                    )
                    latest = session.scalar(select(func.max(Annotation.version)).where(Annotation.lineage == corrects))
                    if latest is None:
                        raise StorageError(f"no annotation with lineage {corrects} to correct")
                    version, lineage = latest + 1, corrects
                annotation = Annotation(
                    case_id=case_id,
                    run_id=run_id,
                    slice_index=slice_index,
                    mask_shape=shape,
                    mask_data=data,
                    author=author.strip(),
                    label=label,
                    note=note,
                    version=version,
                    threshold=threshold,
                    threshold_method=threshold_method,
                )
                if lineage:
                    annotation.lineage = lineage
                session.add(annotation)
                session.flush()
                if not np.array_equal(decode_mask(annotation.mask_shape, annotation.mask_data), mask.astype(bool)):
                    raise StorageError("the mask did not read back as it was given; nothing was saved")
                audit(
                    session,
                    author.strip(),
                    "annotation.correct" if corrects else "annotation.add",
                    f"annotation:{annotation.id}",
                    lineage=annotation.lineage,
                    version=version,
                    case_id=case_id,
                )
                if tuning is not None:
                    _add_tuning_entry(session, tuning, annotation, threshold, author.strip())
                return annotation
        except StorageError as exc:
            # Another writer took this version number first (PostgreSQL); read the new latest and retry.
            if isinstance(exc.__cause__, IntegrityError) and corrects and attempt < VERSION_RETRIES:
                continue
            raise


def _add_tuning_entry(
    session, tuning: tuple[int, int], annotation: Annotation, threshold: float | None, actor: str
) -> None:
    session_id, position = tuning
    tuning_session = session.get(TuningSession, session_id)
    if tuning_session is None:
        raise StorageError(f"no tuning session {session_id}")
    if not 0 <= position < len(tuning_session.worklist["cases"]):
        raise StorageError(f"tuning session {session_id} has no case at position {position}")
    entry = TuningEntry(
        session_id=session_id,
        position=position,
        case_id=annotation.case_id,
        annotation_id=annotation.id,
        threshold=threshold,
        actor=actor,
    )
    session.add(entry)
    session.flush()
    audit(session, actor, "tuning.entry", f"tuning:{session_id}", position=position, annotation_id=annotation.id)


def start_tuning_session(db: Database, *, bundle_id: str, readout: str, reader: str, worklist: dict) -> TuningSession:
    """Record a new tuning session; `worklist` says where its cases came from ("source") and names them in
    order ("cases")."""
    if not reader or not reader.strip():
        raise StorageError("a tuning session needs the reader's name")
    with db.transaction() as session:
        tuning = TuningSession(bundle_id=bundle_id, readout=readout, reader=reader.strip(), worklist=worklist)
        session.add(tuning)
        session.flush()
        audit(session, reader.strip(), "tuning.start", f"tuning:{tuning.id}", bundle_id=bundle_id, readout=readout)
        return tuning


def tuning_entries(db: Database, session_id: int) -> dict[int, tuple[TuningEntry, Annotation]]:
    """Each position's newest entry in the session, with the annotation version it saved."""
    with db.sessions() as session:
        rows = session.execute(
            select(TuningEntry, Annotation)
            .join(Annotation, TuningEntry.annotation_id == Annotation.id)
            .where(TuningEntry.session_id == session_id)
            .order_by(TuningEntry.id)
        )
        return {entry.position: (entry, annotation) for entry, annotation in rows}


def readers_entries(db: Database, bundle_id: str, readout: str) -> list[tuple[TuningEntry, Annotation, str]]:
    """Every tuning entry of every session with this bundle's read-out, oldest first, with the annotation
    version it saved and the session's reader."""
    with db.sessions() as session:
        rows = session.execute(
            select(TuningEntry, Annotation, TuningSession.reader)
            .join(Annotation, TuningEntry.annotation_id == Annotation.id)
            .join(TuningSession, TuningEntry.session_id == TuningSession.id)
            .where(TuningSession.bundle_id == bundle_id, TuningSession.readout == readout)
            .order_by(TuningEntry.id)
        )
        return [(entry, annotation, reader) for entry, annotation, reader in rows]


def save_preset(
    db: Database,
    *,
    bundle_id: str,
    name: str,
    value: float,
    provenance: str,
    actor: str,
    readout: str | None = None,
    criterion: str | None = None,
    figure: float | None = None,
    n_cases: int | None = None,
    session_id: str | None = None,
) -> ThresholdPreset:
    """Store a site threshold as the next version of its name for this bundle; earlier versions stay."""
    attempt = 0
    while True:
        attempt += 1
        try:
            with db.transaction() as session:
                latest = session.scalar(
                    select(func.max(ThresholdPreset.version)).where(
                        ThresholdPreset.bundle_id == bundle_id, ThresholdPreset.name == name
                    )
                )
                preset = ThresholdPreset(
                    bundle_id=bundle_id,
                    name=name,
                    version=(latest or 0) + 1,
                    value=float(value),
                    provenance=provenance,
                    readout=readout,
                    criterion=criterion,
                    figure=None if figure is None else float(figure),
                    n_cases=n_cases,
                    session=session_id,
                    actor=actor,
                )
                session.add(preset)
                session.flush()
                audit(
                    session,
                    actor,
                    "preset.add",
                    f"preset:{preset.id}",
                    bundle_id=bundle_id,
                    name=name,
                    version=preset.version,
                    value=float(value),
                    criterion=criterion,
                )
                return preset
        except StorageError as exc:
            # Another writer took this version number first; read the new latest and retry.
            if isinstance(exc.__cause__, IntegrityError) and attempt < VERSION_RETRIES:
                continue
            raise


def all_presets(db: Database) -> list[ThresholdPreset]:
    """Every version of every site threshold, oldest first."""
    with db.sessions() as session:
        return list(session.scalars(select(ThresholdPreset).order_by(ThresholdPreset.id)))


def latest_presets(db: Database, bundle_id: str) -> list[ThresholdPreset]:
    """The newest version of each of the bundle's named site thresholds."""
    with db.sessions() as session:
        rows = session.scalars(
            select(ThresholdPreset)
            .where(ThresholdPreset.bundle_id == bundle_id)
            .order_by(ThresholdPreset.name, ThresholdPreset.version)
        )
        return list({row.name: row for row in rows}.values())


@dataclass
class CaseHistory:
    case: Case
    runs: list[InferenceRun]
    annotations: list[Annotation]  # every version, oldest first


def case_history(db: Database, case_id: int) -> CaseHistory:
    with db.sessions() as session:
        case = session.get(Case, case_id)
        if case is None:
            raise StorageError(f"no case {case_id}")
        runs = list(
            session.scalars(select(InferenceRun).where(InferenceRun.case_id == case_id).order_by(InferenceRun.id))
        )
        annotations = list(
            session.scalars(select(Annotation).where(Annotation.case_id == case_id).order_by(Annotation.id))
        )
        return CaseHistory(case, runs, annotations)


def list_cases(db: Database, limit: int | None = 200) -> list[Case]:
    """The newest `limit` cases (every case with None), newest first."""
    with db.sessions() as session:
        return list(session.scalars(select(Case).order_by(Case.created.desc()).limit(limit)))


def case_summaries(db: Database, limit: int = 200) -> list[tuple[Case, int, int]]:
    """Newest cases first, each with its number of runs and annotations, in one query."""
    runs = select(InferenceRun.case_id, func.count().label("n")).group_by(InferenceRun.case_id).subquery()
    notes = select(Annotation.case_id, func.count().label("n")).group_by(Annotation.case_id).subquery()
    query = (
        select(Case, func.coalesce(runs.c.n, 0), func.coalesce(notes.c.n, 0))
        .outerjoin(runs, runs.c.case_id == Case.id)
        .outerjoin(notes, notes.c.case_id == Case.id)
        .order_by(Case.created.desc(), Case.id.desc())
        .limit(limit)
    )
    with db.sessions() as session:
        return [(case, int(n_runs), int(n_notes)) for case, n_runs, n_notes in session.execute(query)]


@dataclass
class ExportRow:
    annotation: Annotation
    case: Case
    run: InferenceRun | None


def annotations_for_export(
    db: Database, since: dt.datetime | None = None, author: str | None = None, annotation_id: int | None = None
) -> list[ExportRow]:
    query = (
        select(Annotation, Case, InferenceRun)
        .join(Case, Annotation.case_id == Case.id)
        .outerjoin(InferenceRun, Annotation.run_id == InferenceRun.id)
        .order_by(Annotation.id)
    )
    if since is not None:
        query = query.where(Annotation.created >= since)
    if author is not None:
        query = query.where(Annotation.author == author)
    if annotation_id is not None:
        query = query.where(Annotation.id == annotation_id)
    with db.sessions() as session:
        return [ExportRow(a, c, r) for a, c, r in session.execute(query)]


def record_sent(
    db: Database, *, annotation_id: int, actor: str, destination: str, sop_instance_uids: list[str]
) -> None:
    """Audit that the objects made from an annotation were stored on a PACS (which, where, by whom)."""
    with db.transaction() as session:
        audit(
            session,
            actor,
            "send_to_pacs",
            f"annotation:{annotation_id}",
            destination=destination,
            sop_instance_uids=sop_instance_uids,
        )
