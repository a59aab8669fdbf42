"""What `--threshold NAME|VALUE` means for `infer` and `eval`: a number, one of the bundle's calibrated
thresholds, or the newest version of a site preset stored by `anomascope tune`."""

from __future__ import annotations

from anomascope.engine.calibration import Calibration


class ThresholdChoiceError(ValueError):
    """A --threshold that is neither a number nor a threshold this bundle has."""


def resolve_threshold(
    text: str, calibration: Calibration, bundle_id: str | None, db_url: str | None
) -> tuple[float, str]:
    """(value, how it was chosen, with its provenance) for a read-out with this calibration; presets are
    looked up by `bundle_id` (None for a training-free reference, which has none). The database is opened
    only for a preset name."""
    try:
        return float(text), "manual"
    except ValueError:
        pass
    calibrated = calibration.thresholds
    if text in calibrated:
        return calibrated[text].value, f"{text} ({calibrated[text].provenance})"
    presets = stored_presets(bundle_id, db_url) if bundle_id is not None else {}
    if text in presets:
        preset = presets[text]
        return preset.value, f"preset {preset.name!r} v{preset.version} ({preset.provenance})"
    known = [*calibrated, *presets]
    owner = f"bundle {bundle_id}" if bundle_id else "this reference"
    raise ThresholdChoiceError(
        f"--threshold {text!r} is not a number, nor a threshold of {owner} ({', '.join(known) or 'it has none'})"
    )


def stored_presets(bundle_id: str, db_url: str | None) -> dict:
    """The newest version of each site preset of the bundle, by name. Storage is imported here, not above:
    the device kit's `infer` and `eval` run where its database packages are not installed."""
    from anomascope.storage import Database, latest_presets

    db = Database(db_url)
    try:
        return {preset.name: preset for preset in latest_presets(db, bundle_id)}
    finally:
        db.dispose()
