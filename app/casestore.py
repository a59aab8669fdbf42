"""Joining engine cases and storage records (the app is the only layer that sees both)."""

from __future__ import annotations

import hashlib
import json

from anomascope.engine.io import Case as ImageCase
from anomascope.storage import Database, add_case
from anomascope.storage.models import Case as CaseRecord


def content_hash(case: ImageCase) -> str:
    """Identity of the image: its pixels and its geometry. The same pixels in another container are the
    same case; the same pixels with another spacing or modality are another (a JPEG copy of a DICOM
    slice has no spacing, and its masks have no area in mm²)."""
    digest = hashlib.sha256(
        json.dumps(
            [list(case.shape), case.modality, case.summary()["spacing"], case.summary()["slice_spacing"]]
        ).encode()
    )
    digest.update(case.pixels.tobytes())
    return digest.hexdigest()


def register_case(db: Database, case: ImageCase, actor: str) -> CaseRecord:
    name = case.source.replace("\\", "/").rsplit("/", 1)[-1]
    metadata = dict(case.metadata, slice_spacing=case.slice_spacing, window=list(case.window))
    return add_case(
        db,
        content_hash=content_hash(case),
        source_name=name,
        format=case.format,
        modality=case.modality,
        shape=list(case.shape),
        spacing=None if case.spacing is None else list(case.spacing),
        metadata=metadata,
        actor=actor,
    )
