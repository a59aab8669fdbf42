"""bench/lesion_breakdown.py: a map's pooled figures over the whole, each size third and each group equal a
direct computation over those cases' pixels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tests.bench_scripts import load_bench_script
from tests.synthetic import random_disk


@pytest.fixture(scope="module")
def breakdown_module():
    return load_bench_script("lesion_breakdown.py")


def pooled_ap(maps, truths, chosen):
    return average_precision_score(
        np.concatenate([truths[k].ravel() for k in chosen]), np.concatenate([maps[k].ravel() for k in chosen])
    )


def test_breakdown_pools_the_cases_of_each_third_and_group(breakdown_module):
    rng = np.random.default_rng(0)
    # Six lesions of growing size; the map finds the small ones cleanly and the large ones through noise.
    truths = [random_disk(rng, 32, 0.05 + 0.04 * k, 0.06 + 0.04 * k) for k in range(6)]
    maps = [t + rng.normal(0, 0.1 + 0.3 * k, t.shape) for k, t in enumerate(truths)]
    groups = ["p1", "p1", "p2", "p2", "p2", "p3"]
    report = breakdown_module.breakdown(maps, truths, groups)
    assert report["pixel_ap"] == pytest.approx(pooled_ap(maps, truths, range(6)))
    by_size = report["pixel_ap_by_size"]
    assert list(by_size) == list(breakdown_module.THIRDS)
    for third, chosen in zip(breakdown_module.THIRDS, ([0, 1], [2, 3], [4, 5]), strict=True):
        assert by_size[third] == {"cases": 2, "pixel_ap": pytest.approx(pooled_ap(maps, truths, chosen))}
    assert by_size["smallest third"]["pixel_ap"] > by_size["largest third"]["pixel_ap"]
    assert report["pixel_ap_by_group"]["p2"]["pixel_ap"] == pytest.approx(pooled_ap(maps, truths, [2, 3, 4]))
    values = sorted(v["pixel_ap"] for v in report["pixel_ap_by_group"].values())
    assert breakdown_module.group_range(report["pixel_ap_by_group"]) == (
        f"{values[0]:.2f} / {values[1]:.2f} / {values[2]:.2f}"
    )


def test_table_prints_a_dash_for_a_figure_that_has_none(breakdown_module):
    thirds = {third: {"cases": 1, "pixel_ap": 0.5} for third in breakdown_module.THIRDS}
    thirds["largest third"]["pixel_ap"] = None
    report = {
        "n_cases": 3,
        "methods": {
            "a": {
                "pixel_ap": 0.25,
                "pixel_ap_by_size": thirds,
                "pixel_ap_by_group": {"p1": {"cases": 3, "pixel_ap": None}},
            }
        },
    }
    lines = breakdown_module.table(report).splitlines()
    assert lines[2] == "| all 3 | 0.250 |"
    assert lines[5] == "| largest third (1) | — |"
    assert lines[6] == "| each of 1 groups: lowest / median / highest | — |"
