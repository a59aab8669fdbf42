"""What `--threshold NAME|VALUE` means for `infer` and `eval`: a number, one of the bundle's calibrated
thresholds, or the newest version of a site preset stored by `anomascope tune`."""

from __future__ import annotations

from anomascope.engine.methods import Predictor
from anomascope.storage import Database, latest_presets


class ThresholdChoiceError(ValueError):
    """A --threshold that is neither a number nor a threshold this bundle has."""


def resolve_threshold(text: str, predictor: Predictor, db_url: str | None) -> tuple[float, str]:
    """(value, how it was chosen, with its provenance). The database is opened only for a preset name."""
    try:
        return float(text), "manual"
    except ValueError:
        pass
    calibrated = predictor.calibration.thresholds
    if text in calibrated:
        return calibrated[text].value, f"{text} ({calibrated[text].provenance})"
    db = Database(db_url)
    presets = {preset.name: preset for preset in latest_presets(db, predictor.bundle.id)}
    db.dispose()
    if text in presets:
        preset = presets[text]
        return preset.value, f"preset {preset.name!r} v{preset.version} ({preset.provenance})"
    known = [*calibrated, *presets]
    raise ThresholdChoiceError(
        f"--threshold {text!r} is not a number, nor a threshold of bundle {predictor.bundle.id} "
        f"({', '.join(known) if known else 'it has none'})"
    )
