"""The control cortices: each model family must win on the cortex built from its own features.

``simulate(..., ground_truth="gabor")`` makes every voxel a linear read-out of the Gabor pyramid, so
the two-step Gabor model holds the true features; ``ground_truth="cnn"`` makes every voxel a read-out
of a random network with the released ETECRM architecture, which the end-to-end model can represent
exactly. If a family loses on its own control, a model or the evaluation is broken.

Quick profile (a few minutes on a CPU): one ROI, the paired bootstrap over test images.
"""

import numpy as np
import pytest

from etecrm_lib import evaluation
from etecrm_lib.ablations import run_variants
from etecrm_lib.data import simulate


def _compare(ground_truth: str, n_train: int | None = None):
    ds = simulate(1, "quick", seed=0, ground_truth=ground_truth, n_train=n_train)
    etecrm, gwp = run_variants(ds, ["etecrm", "gwp_ridge"], rois=["V1"], profile="quick", progress=False)
    return evaluation.paired_bootstrap(gwp, etecrm, ds.test.responses["V1"], n_bootstrap=1000)


# Marked: with the calibrated (low) signal of generator version 2, the quick profile's 40 test images
# leave the difference undecided (gwp_ridge - etecrm = +0.038 [-0.027, +0.115] on V1, measured after
# the issue-10 rewrite). The full-profile control table (tools/control_table.py, GPU) decides; issue
# 14 stays open until it has been run.
@pytest.mark.xfail(reason="undecided on the quick profile's 40 test images; the full-profile control table "
                          "decides", strict=False)
def test_the_gabor_model_wins_on_the_gabor_control():
    comparison = _compare("gabor")
    assert comparison.a_beats_b, str(comparison)  # gwp_ridge - etecrm, interval above 0


# Marked: undecided on the quick profile, before the issue-10 rewrite (gwp_ridge - etecrm = +0.026
# [-0.075, +0.065] on V1) and after it. The full-profile control table (tools/control_table.py, GPU)
# decides; issue 14 stays open until it has been run.
@pytest.mark.xfail(reason="undecided on the quick profile; the full-profile control table decides", strict=False)
def test_etecrm_wins_on_the_cnn_control():
    comparison = _compare("cnn")
    assert comparison.ci_high < 0, str(comparison)  # gwp_ridge - etecrm, interval below 0


@pytest.mark.parametrize("ground_truth", ["gabor", "cnn"])
def test_controls_keep_the_calibrated_measurement(ground_truth):
    from etecrm_lib.data.simulate import SimulationConfig

    config = SimulationConfig(name="tiny", image_size=32, n_train=24, n_test=6, voxels={"V1": 20, "V3": 16})
    cortex = simulate(1, config, seed=0, cache=False)
    control = simulate(1, config, seed=0, ground_truth=ground_truth, cache=False)
    assert control.info["ground_truth"] == ground_truth and "control" in control.info["areas"]["V1"]
    np.testing.assert_array_equal(control.test.stimuli, cortex.test.stimuli)
    np.testing.assert_array_equal(control.voxels["V1"].extra["snr"], cortex.voxels["V1"].extra["snr"])
    assert not np.allclose(control.test.oracle["V1"], cortex.test.oracle["V1"])
