"""The one way a method's config is built: its defaults, then a TOML file, then overrides."""

from __future__ import annotations

import json

from anomascope.engine.config import build_config, from_dict, to_dict
from anomascope.engine.methods import default_config


def test_a_toml_file_overrides_the_defaults_and_overrides_override_both(tmp_path):
    toml = tmp_path / "config.toml"
    toml.write_text("[train]\nsteps = 3000\nbatch_size = 8\n[preprocess]\nimage_size = 128\n")
    config = build_config(default_config("ppii"), toml, {"train": {"steps": 10}, "ppii": {"intensity": "unit"}})
    assert (config.train.steps, config.train.batch_size) == (10, 8)
    assert config.preprocess.image_size == 128 and config.ppii.intensity == "unit"
    assert config.train.learning_rate == default_config("ppii").train.learning_rate  # untouched: the paper's
    assert build_config(default_config("ppii")) == default_config("ppii")


def test_several_toml_files_apply_in_order_each_over_the_ones_before(tmp_path):
    recipe, change = tmp_path / "recipe.toml", tmp_path / "change.toml"
    recipe.write_text("[train]\nsteps = 3000\nbatch_size = 8\n")
    change.write_text("[train]\nsteps = 500\n[preprocess]\nimage_size = 128\n")
    config = build_config(default_config("ppii"), [recipe, str(change)])
    assert (config.train.steps, config.train.batch_size, config.preprocess.image_size) == (500, 8, 128)
    assert build_config(default_config("ppii"), [change, recipe]).train.steps == 3000
    assert build_config(default_config("ppii"), []) == default_config("ppii")


def test_a_manifest_s_lists_come_back_as_tuples_optional_tuples_included():
    """JSON and TOML have no tuples: a config read back from a manifest equals the one that was saved."""
    config = build_config(default_config("ppii"), overrides={"generator": {"bright_tint": [0.5, 0.9, 1.0]}})
    assert config.generator.bright_tint == (0.5, 0.9, 1.0)
    assert config.train.adam_betas == (0.9, 0.999) and isinstance(config.train.adam_betas, tuple)
    assert from_dict(type(config), json.loads(json.dumps(to_dict(config)))) == config  # as a manifest holds it
    untinted = build_config(default_config("ppii"))
    assert untinted.generator.bright_tint is None
