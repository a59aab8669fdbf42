"""Every shipped bundle scores its sample exactly as recorded in tests/data/shipped_maps.json: the same
maps, restorations and uncertainties bit for bit on the CPU, for each read-out."""

from __future__ import annotations

import json

import pytest
import torch

from tests.shipped_maps import OUTPUTS, RECORD, cpu_model, fingerprint, score_readouts, shipped_bundles

RECORDED = json.loads(RECORD.read_text())
# Bit-for-bit needs the same kernels: the same torch build on the same instruction set and the same model of
# processor (two AVX512 models differed in the last bits, numpy's kernels too).
# Elsewhere the float64 sums must agree to 1e-5 (relative), which a changed read-out would not meet.
SAME_KERNELS = (
    RECORDED["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    and RECORDED["torch"] == torch.__version__
    and RECORDED.get("cpu_model") == cpu_model()
)


@pytest.fixture
def one_thread():
    """The reduction order of the CPU kernels depends on the thread count; the record used one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("bundle", shipped_bundles(), ids=lambda path: path.name)
def test_a_shipped_bundle_scores_as_recorded(bundle, one_thread):
    for readout, result in score_readouts(bundle).items():
        expected, found = RECORDED["maps"][f"{bundle.name}:{readout}"], fingerprint(result)
        for name in OUTPUTS:
            if expected[name] is None:
                assert found[name] is None, f"{readout}: {name} appeared"
                continue
            assert found[name]["shape"] == expected[name]["shape"], f"{readout}: {name} shape"
            if SAME_KERNELS:
                assert found[name]["sha256"] == expected[name]["sha256"], f"{readout}: {name} differs"
            else:
                for total in ("sum", "sum_of_squares"):
                    assert found[name][total] == pytest.approx(expected[name][total], rel=1e-5), f"{readout}: {name}"
        if SAME_KERNELS:
            assert found["scores"] == expected["scores"]
        else:
            assert found["scores"] == pytest.approx(expected["scores"], rel=1e-5)


def test_every_shipped_bundle_has_a_record():
    recorded = {key.split(":")[0] for key in RECORDED["maps"]}
    assert recorded == {path.name for path in shipped_bundles()}
