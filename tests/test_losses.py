"""Losses and voxel weights: against direct numpy computations, finite gradients, vmap-ability."""

import numpy as np
import pytest
import torch

from etecrm_lib.losses import (batch_pearson_r, correlation_loss, encoding_loss, mse_loss, voxel_weights_from_r,
                               weighted_correlation_loss)


def _batch(seed=0, b=16, v=7):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(b, v))
    x = 0.6 * y + rng.normal(size=(b, v))
    w = rng.uniform(0.1, 2.0, size=v)
    return x, y, w


def _np_r(x, y):
    return np.array([np.corrcoef(x[:, j], y[:, j])[0, 1] for j in range(x.shape[1])])


def test_batch_pearson_r_matches_numpy_corrcoef():
    x, y, _ = _batch()
    r = batch_pearson_r(torch.tensor(x), torch.tensor(y), eps=0.0).numpy()
    np.testing.assert_allclose(r, _np_r(x, y), rtol=1e-10, atol=1e-12)
    # the default eps changes nothing measurable at unit-variance data
    r_eps = batch_pearson_r(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(r_eps, _np_r(x, y), atol=1e-5)


def test_weighted_correlation_loss_matches_numpy():
    x, y, w = _batch(1)
    expected = 1 - np.sum(w * _np_r(x, y)) / np.sum(w)
    got = weighted_correlation_loss(torch.tensor(x), torch.tensor(y), torch.tensor(w))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # uniform weights give the plain correlation loss 1 - mean r, and so does no weight at all
    plain = 1 - np.mean(_np_r(x, y))
    assert float(correlation_loss(torch.tensor(x), torch.tensor(y))) == pytest.approx(plain, rel=1e-6)
    assert float(correlation_loss(torch.tensor(x), torch.tensor(y), torch.full((7,), 3.0, dtype=torch.float64))) \
        == pytest.approx(plain, rel=1e-6)


def test_mse_loss_matches_numpy_with_and_without_weights():
    x, y, w = _batch(2)
    per_voxel = ((x - y) ** 2).mean(axis=0)
    assert float(mse_loss(torch.tensor(x), torch.tensor(y))) == pytest.approx(per_voxel.mean(), rel=1e-10)
    assert float(mse_loss(torch.tensor(x), torch.tensor(y), torch.tensor(w))) == pytest.approx(
        np.sum(w * per_voxel) / np.sum(w), rel=1e-10)


def test_correlation_loss_is_blind_to_scale_and_offset_mse_is_not():
    x, y, w = (torch.tensor(a) for a in _batch(3))
    scaled = 3.0 * x + 5.0
    assert float(correlation_loss(scaled, y, w)) == pytest.approx(float(correlation_loss(x, y, w)), rel=1e-9)
    assert float(mse_loss(scaled, y)) > float(mse_loss(x, y)) + 1


def test_zero_weight_removes_a_voxel_from_the_loss():
    x, y, w = (torch.tensor(a) for a in _batch(4))
    w[2] = 0.0
    garbage = x.clone()
    garbage[:, 2] = torch.randn(x.shape[0], dtype=x.dtype) * 100
    assert float(correlation_loss(garbage, y, w)) == pytest.approx(float(correlation_loss(x, y, w)), rel=1e-12)


def test_gradients_are_finite_with_constant_voxels_in_the_batch():
    x, y, w = _batch(5)
    y[:, 0] = 1.5               # a voxel whose response does not vary over the batch
    x[:, 1] = -0.3              # a voxel whose prediction does not vary
    for name in ("corr", "mse"):
        pred = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        loss = encoding_loss(name, pred, torch.tensor(y, dtype=torch.float32), torch.tensor(w, dtype=torch.float32))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pred.grad).all(), name
    r = batch_pearson_r(torch.tensor(x), torch.tensor(y))
    assert float(r[0]) == 0.0 and float(r[1]) == 0.0


def test_correlation_loss_gradient_matches_finite_differences():
    x, y, w = (torch.tensor(a) for a in _batch(6, b=6, v=3))
    assert torch.autograd.gradcheck(lambda p: correlation_loss(p, y, w), (x.clone().requires_grad_(),))


def test_losses_work_under_vmap_like_a_loop():
    rng = np.random.default_rng(7)
    pred, resp, w = (torch.tensor(rng.normal(size=s)) for s in [(3, 10, 5), (3, 10, 5), (3, 5)])
    for fn in (correlation_loss, mse_loss):
        batched = torch.func.vmap(fn)(pred, resp, w)
        looped = torch.stack([fn(pred[k], resp[k], w[k]) for k in range(3)])
        torch.testing.assert_close(batched, looped)


def test_unknown_loss_name_says_what_to_use():
    with pytest.raises(ValueError, match="loss='corr' with voxel weights"):
        encoding_loss("weighted_corr", torch.zeros(4, 2), torch.zeros(4, 2))


def test_voxel_weights_from_r():
    r = torch.tensor([0.5, -0.2, 0.1, 0.0, 0.4])
    w = voxel_weights_from_r(r)
    expected = np.array([0.5, 0, 0.1, 0, 0.4]) / 1.0 * 5
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    assert float(w.mean()) == pytest.approx(1.0)
    w2 = voxel_weights_from_r(r, power=2.0)
    assert float(w2[0] / w2[2]) == pytest.approx(25.0, rel=1e-5)       # power focuses on the best voxels
    # a mask (padded voxels of batched training) gets weight 0 and is left out of the mean
    mask = torch.tensor([True, True, True, False, False])
    wm = voxel_weights_from_r(r, mask=mask)
    np.testing.assert_allclose(wm.numpy(), [0.5 / 0.6 * 3, 0, 0.1 / 0.6 * 3, 0, 0], rtol=1e-6)
    # nothing predictable yet (or NaN): uniform weights over the valid voxels
    np.testing.assert_allclose(voxel_weights_from_r(torch.tensor([-0.1, float("nan"), 0.0]), mask=torch.tensor([1, 1, 0])).numpy(),
                               [1, 1, 0])
