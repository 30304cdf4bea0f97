"""The control cortices: each model family must win on the cortex built from its own features.

``simulate(..., ground_truth="gabor")`` makes every voxel a linear read-out of the Gabor pyramid, so
the two-step Gabor model holds the true features; ``ground_truth="cnn"`` makes every voxel a
read-out of a random network with the released ETECRM architecture, which the end-to-end model can
represent exactly. If a family loses on its own control, a model or the evaluation is broken.

Quick profile (a minute or two on a CPU): one ROI, the paired bootstrap over test images. At the
calibrated (vim-1-like) signal-to-noise ratio, 300 train images and 40 noisy test images leave the
Gabor control undecided (gwp_ridge - etecrm = -0.008 [-0.055, +0.078] on V1, generator 3), so the
tests run a control *experiment* with more data: 600 train images measured 16 times each (less
noise in training) and the models scored against the noise-free test responses (no noise in
scoring). The full-profile table (`etecrm controls`, GPU) uses the
default experiment and is in data/results/controls.
"""

from dataclasses import replace

import numpy as np
import pytest

from etecrm_lib import evaluation
from etecrm_lib.ablations import run_variants
from etecrm_lib.data import simulate


def _compare(ground_truth: str):
    from etecrm_lib.data.calibration import SimulationConfig

    config = replace(
        SimulationConfig.for_profile("quick"),
        name="control-test",
        n_train=600,
        train_repeats=16,
        voxels={"V1": 120},
    )
    ds = simulate(1, config, seed=0, ground_truth=ground_truth, cache=False)
    etecrm, gwp = run_variants(
        ds, ["etecrm", "gwp_ridge"], rois=["V1"], profile="quick", progress=False
    )
    return evaluation.paired_bootstrap(gwp, etecrm, ds.test.oracle["V1"], n_bootstrap=1000)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="generator 4 (issue 19, open): the Gabor control is undecided in this experiment "
    "(gwp_ridge - etecrm +0.023 [-0.027, +0.066]; with 1,200 train images -0.018 [-0.039, "
    "+0.018]); on generator 3 it was +0.050 [+0.011, +0.097]. Strict: a pass fails the run, so "
    "whoever fixes the control must remove this mark.",
)
def test_the_gabor_model_wins_on_the_gabor_control():
    comparison = _compare("gabor")
    assert comparison.a_beats_b, str(comparison)  # gwp_ridge - etecrm, interval above 0


@pytest.mark.slow
def test_etecrm_wins_on_the_cnn_control():
    comparison = _compare("cnn")  # measured (generator 3): -0.566 [-0.682, -0.459]
    assert comparison.ci_high < 0, str(comparison)  # gwp_ridge - etecrm, interval below 0


@pytest.mark.parametrize("ground_truth", ["gabor", "cnn"])
def test_controls_keep_the_calibrated_measurement(ground_truth):
    from etecrm_lib.data.calibration import SimulationConfig

    config = SimulationConfig(
        name="tiny", image_size=32, n_train=24, n_test=6, voxels={"V1": 20, "V3": 16}
    )
    cortex = simulate(1, config, seed=0, cache=False)
    control = simulate(1, config, seed=0, ground_truth=ground_truth, cache=False)
    assert control.info["ground_truth"] == ground_truth and "control" in control.info["areas"]["V1"]
    np.testing.assert_array_equal(control.test.stimuli, cortex.test.stimuli)
    np.testing.assert_array_equal(
        control.voxels["V1"].extra["snr"], cortex.voxels["V1"].extra["snr"]
    )
    assert not np.allclose(control.test.oracle["V1"], cortex.test.oracle["V1"])
