"""Precision by card: one setting, ``ETECRMConfig.precision``, resolved by gpu.resolve_precision.

The choice itself is checked on the CPU with faked compute capabilities; the GPU test forces each
precision on the lent card and compares training with float32's.
"""

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from etecrm_lib import gpu
from etecrm_lib.models import ETECRMNet
from etecrm_lib.training import ETECRMConfig, fit_etecrm

# (setting, capability) -> precision; capabilities of real cards: T4 7.5, V100 7.0, P100 6.0,
# A100 8.0, L4 8.9, H100 9.0.
CHOICES = [
    ("auto", None, "fp32"),
    ("bf16", None, "fp32"),
    ("fp16", None, "fp32"),
    ("auto", (9, 0), "bf16"),
    ("auto", (8, 0), "bf16"),
    ("auto", 8.9, "bf16"),
    ("auto", (7, 5), "fp16"),
    ("auto", (7, 0), "fp16"),
    ("auto", (6, 0), "fp32"),
    ("fp16", (9, 0), "fp16"),
    ("fp32", (9, 0), "fp32"),
    ("fp32", (7, 5), "fp32"),
    ("fp16", (6, 1), "fp16"),
]


@pytest.mark.parametrize("setting, capability, expected", CHOICES)
def test_precision_is_chosen_by_the_cards_capability(setting, capability, expected):
    assert gpu.resolve_precision(setting, capability) == expected


def test_bf16_forced_below_ampere_and_unknown_settings_are_refused():
    with pytest.raises(ValueError, match=r"capability >= 8.0 \(this one has 7.5\).*'auto'"):
        gpu.resolve_precision("bf16", (7, 5))
    with pytest.raises(ValueError, match="precision must be one of"):
        gpu.resolve_precision("half", (9, 0))
    with pytest.raises(ValueError, match="precision must be one of"):
        ETECRMConfig(precision="float16")
    assert ETECRMConfig().precision == "auto"


def test_the_cpu_trains_in_float32_whatever_the_setting():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(60, 32, 32)).astype(np.float32)
    responses = rng.normal(size=(60, 5)).astype(np.float32)
    config = ETECRMConfig(image_size=32, channels=4, epochs=1, batch_size=16, precision="fp16")
    model = fit_etecrm(images, responses, config, device="cpu", progress=False)
    assert model.history.precision == "fp32"
    assert model.predict(images[:2]).dtype == np.float32


def test_float16_autocast_keeps_the_regression_layer_in_float32():
    """The signed variant once overflowed float16 (largest 65504): the readout sum is float32."""
    torch.manual_seed(0)
    net = ETECRMNet(5, image_size=32, channels=8, n_layers=3, readout_weights="signed")
    with torch.no_grad():
        net.weight.fill_(1e5)  # readout sums of about 2e5, beyond float16
    images = torch.rand(4, 1, 32, 32)
    reference = net(images)
    with torch.autocast("cpu", dtype=torch.float16):
        naive = (net.features(images - 0.5).flatten(1) @ net.regression_weights()).float()
        safe = net(images)
    assert not torch.isfinite(naive).all()  # what the layer would do in float16
    assert safe.dtype == torch.float32 and torch.isfinite(safe).all()
    torch.testing.assert_close(safe, reference, rtol=2e-2, atol=0)


# ------------------------------------------------------------------------------ on a GPU
ACCURACY_TOLERANCE = 0.02
"""Forced bf16 / fp16 must reach float32's median test r within this (absolute) distance."""


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run it on the lent GPU)")
@pytest.mark.parametrize("readout", ["squared", "signed"])
def test_each_precision_trains_finite_and_reaches_float32_accuracy(readout):
    from etecrm_lib.data import simulate
    from etecrm_lib.evaluation import pearson_r

    ds = simulate(subject=1, profile="quick", seed=0)
    config = ETECRMConfig.for_profile("quick", readout_weights=readout, epochs=20, channels=32)
    capability = torch.cuda.get_device_capability()
    forced = [p for p in ("fp32", "fp16", "bf16") if p != "bf16" or capability >= (8, 0)]
    median_r, seconds = {}, {}
    for precision in forced:
        started = time.perf_counter()
        model = fit_etecrm(
            ds.train.stimuli,
            ds.train.responses["V1"],
            replace(config, precision=precision),
            device="cuda",
            progress=False,
        )
        seconds[precision] = time.perf_counter() - started
        assert model.history.precision == precision
        assert np.isfinite(model.history.train_loss).all()
        predicted = torch.as_tensor(model.predict(ds.test.stimuli))
        assert torch.isfinite(predicted).all()
        r = pearson_r(predicted, torch.as_tensor(ds.test.responses["V1"]))
        median_r[precision] = float(r.median())
    print(
        f"\n{torch.cuda.get_device_name()} {readout}: median test r {median_r}, seconds {seconds}"
    )
    for precision, r in median_r.items():
        assert abs(r - median_r["fp32"]) <= ACCURACY_TOLERANCE, (precision, median_r)
