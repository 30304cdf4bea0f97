"""The losses of selective optimization, against hand computations and numpy/scipy."""

import numpy as np
import pytest
import scipy.stats
import torch

from etecrm_lib.losses import (
    MEAN_PENALTY,
    batch_pearson_r,
    correlation_loss,
    loss_function,
    mse_loss,
    self_adapting_weights,
    weighted_correlation_loss,
)


def _batch(seed=0, b=32, v=6):
    g = torch.Generator().manual_seed(seed)
    resp = torch.randn(b, v, generator=g, dtype=torch.float64)
    pred = 0.6 * resp + torch.randn(b, v, generator=g, dtype=torch.float64)
    return pred, resp


def test_batch_pearson_r_matches_scipy():
    pred, resp = _batch()
    expected = [scipy.stats.pearsonr(pred[:, v], resp[:, v])[0] for v in range(pred.shape[1])]
    np.testing.assert_allclose(batch_pearson_r(pred, resp).numpy(), expected, atol=1e-6)


def test_batch_pearson_r_does_not_depend_on_units():
    """A perfect prediction is r = 1 whatever the units (an absolute epsilon made it 0.55 at
    1e-5)."""
    pred, resp = _batch(b=16)
    for scale in (1e-5, 1.0, 1e5):
        r = batch_pearson_r(resp * scale, resp * scale)
        np.testing.assert_allclose(r.numpy(), 1.0, atol=1e-5)
        np.testing.assert_allclose(
            batch_pearson_r(pred * scale + 3, resp).numpy(),
            batch_pearson_r(pred, resp).numpy(),
            atol=1e-6,
        )


def test_constant_voxel_gets_zero_and_finite_gradient():
    pred, resp = _batch(b=8, v=3)
    pred = pred.clone()
    pred[:, 1] = 2.0
    pred.requires_grad_(True)
    r = batch_pearson_r(pred, resp)
    assert r[1] == 0
    r.sum().backward()
    assert torch.isfinite(pred.grad).all()


def test_weighted_correlation_loss_by_hand():
    """-mean(r^3) + 1e-4 mean(pred), i.e. -mean(w r) with w = r^2."""
    pred, resp = _batch(seed=1)
    r = np.array([scipy.stats.pearsonr(pred[:, v], resp[:, v])[0] for v in range(pred.shape[1])])
    expected = -np.mean(r**3) + 1e-4 * pred.numpy().mean()
    assert float(weighted_correlation_loss(pred, resp)) == pytest.approx(expected, abs=1e-6)
    w = self_adapting_weights(torch.as_tensor(r))
    assert float(-(w * torch.as_tensor(r)).mean() + MEAN_PENALTY * pred.mean()) == pytest.approx(
        expected, abs=1e-6
    )
    plain = -np.mean(r) + 1e-4 * pred.numpy().mean()
    assert float(correlation_loss(pred, resp)) == pytest.approx(plain, abs=1e-6)
    assert float(mse_loss(pred, resp)) == pytest.approx(float(((pred - resp) ** 2).mean()))


def test_self_adapting_weights_steer_the_gradient_to_predictable_voxels():
    """d(-r^3)/dr = -3 r^2: a voxel with r near 0 gets almost no gradient, unlike the plain loss."""
    g = torch.Generator().manual_seed(0)
    resp = torch.randn(64, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(64, 2, generator=g, dtype=torch.float64)
    pred = torch.stack([resp[:, 0] + 0.5 * noise[:, 0], noise[:, 1]], dim=1).requires_grad_(True)
    weighted_correlation_loss(pred, resp, mean_penalty=0).backward()
    weighted = pred.grad.norm(dim=0)
    pred.grad = None
    correlation_loss(pred, resp, mean_penalty=0).backward()
    plain = pred.grad.norm(dim=0)
    assert weighted[1] / weighted[0] < 0.1 * (plain[1] / plain[0])


def test_mean_penalty_pushes_predictions_down_and_only_that():
    pred, resp = _batch()
    base = correlation_loss(pred, resp, mean_penalty=0)
    assert float(correlation_loss(pred + 5, resp)) == pytest.approx(
        float(base + MEAN_PENALTY * (pred + 5).mean())
    )


def test_loss_function_names():
    assert loss_function("weighted_corr") is weighted_correlation_loss
    assert loss_function("corr") is correlation_loss and loss_function("mse") is mse_loss
    with pytest.raises(ValueError, match="loss must be one of"):
        loss_function("r3")
