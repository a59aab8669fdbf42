"""What every reader's review shares: the database, the catalogue of bundles, the case store, the viewer's
and the exports' file stores, the device methods run on and the PACS. Each part of the review services
(cases, runs, scene, compare, annotations, pacs_link) is a `Services` with the methods of its part; the
parts it builds on are its bases, and `ReviewApp` (app.py) is all of them."""

from __future__ import annotations

from pathlib import Path

import torch

from anomascope.app.bundles import Catalogue
from anomascope.app.pacs import Pacs
from anomascope.app.viewer import VolumeStore
from anomascope.storage import Database


class Services:
    def __init__(
        self,
        db: Database,
        catalogue: Catalogue,
        cases_dir: Path,
        device: torch.device | None = None,
        volumes: VolumeStore | None = None,
        pacs: Pacs | None = None,
    ):
        self.db, self.catalogue, self.cases_dir, self.pacs = db, catalogue, cases_dir, pacs
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.volumes = volumes or VolumeStore(cases_dir.parent / "viewer")
        self.exports = VolumeStore(cases_dir.parent / "exports")  # one folder per export, swept as they age
