"""Voxel-wise ridge: cross-checked against scikit-learn and himalaya on small data."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from etecrm_lib.regression import (
    RidgeConfig,
    fit_layer_selection,
    fit_ridge_cv,
    kfold_indices,
    ridge_cv_scores,
)

ALPHAS = np.logspace(-1, 5, 13)


def _data(n=90, p=25, v=12, seed=0, noise=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, p)) + 0.5).astype(np.float32)
    w = rng.standard_normal((p, v)) * rng.random(v)
    y = (x @ w + noise * np.sqrt(p) * rng.standard_normal((n, v)) + 1.5).astype(np.float32)
    return x, y, rng.standard_normal((30, p)).astype(np.float32)


def test_folds_match_sklearn_kfold():
    for (tr, va), (tr_sk, va_sk) in zip(kfold_indices(23, 4), KFold(4).split(np.zeros(23))):
        np.testing.assert_array_equal(tr, tr_sk)
        np.testing.assert_array_equal(va, va_sk)


@pytest.mark.parametrize("p", [25, 200])  # primal (P < N) and dual (P > N) paths
@pytest.mark.parametrize("score", ["r", "r2"])
def test_cv_scores_match_sklearn_ridge_per_alpha(p, score):
    x, y, _ = _data(p=p)
    ours = ridge_cv_scores(x, y, ALPHAS, n_folds=4, score=score, device="cpu").numpy()
    expected = np.zeros_like(ours, dtype=np.float64)
    for tr, va in KFold(4).split(x):
        for i, alpha in enumerate(ALPHAS):
            pred = Ridge(alpha=alpha).fit(x[tr], y[tr]).predict(x[va])
            if score == "r":
                expected[i] += [np.corrcoef(pred[:, j], y[va, j])[0, 1] for j in range(y.shape[1])]
            else:
                expected[i] += 1 - ((y[va] - pred) ** 2).sum(0) / (
                    (y[va] - y[va].mean(0)) ** 2
                ).sum(0)
    np.testing.assert_allclose(ours, expected / 4, atol=2e-4)


@pytest.mark.parametrize("p", [25, 200])
def test_refit_matches_sklearn_ridge_with_each_voxels_alpha(p):
    x, y, x_new = _data(p=p)
    fit = fit_ridge_cv(x, y, ALPHAS, n_folds=5, device="cpu")
    assert len(set(fit.alphas.tolist())) > 1, (
        "the test data should make voxels choose different alphas"
    )
    expected = np.stack(
        [Ridge(alpha=float(a)).fit(x, y[:, j]).predict(x_new) for j, a in enumerate(fit.alphas)], 1
    )
    got = fit.predict(x_new).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3 * np.abs(expected).max())
    j = int(np.argmax(np.abs(expected).max(0)))
    ref = Ridge(alpha=float(fit.alphas[j])).fit(x, y[:, j])
    np.testing.assert_allclose(
        fit.coef[:, j].numpy(), ref.coef_, atol=1e-3 * np.abs(ref.coef_).max()
    )
    np.testing.assert_allclose(
        float(fit.intercept[j]), ref.intercept_, atol=1e-3 * abs(ref.intercept_) + 1e-3
    )
    assert torch.equal(fit.alphas, fit.alpha_grid[fit.cv_scores.argmax(0)])


@pytest.mark.parametrize("p", [25, 200])
@pytest.mark.parametrize("score", ["r", "r2"])
def test_agrees_with_himalaya(p, score):
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score, r2_score

    x, y, x_new = _data(p=p, seed=1)
    params = dict(
        alphas=ALPHAS,
        cv=5,
        fit_intercept=True,
        solver_params=dict(score_func=correlation_score if score == "r" else r2_score),
    )
    ref = (KernelRidgeCV(**params) if p > x.shape[0] else RidgeCV(**params)).fit(
        x.astype(np.float64), y.astype(np.float64)
    )
    fit = fit_ridge_cv(x, y, ALPHAS, n_folds=5, score=score, device="cpu")
    np.testing.assert_allclose(fit.alphas.numpy(), np.asarray(ref.best_alphas_), rtol=1e-4)
    ours, theirs = fit.predict(x_new).numpy(), np.asarray(ref.predict(x_new.astype(np.float64)))
    r = [np.corrcoef(ours[:, j], theirs[:, j])[0, 1] for j in range(y.shape[1])]
    assert min(r) > 0.9999


def test_voxel_chunking_changes_nothing():
    x, y, x_new = _data(p=200, v=11)
    a = fit_ridge_cv(x, y, ALPHAS, device="cpu", voxel_chunk=3)
    b = fit_ridge_cv(x, y, ALPHAS, device="cpu", voxel_chunk=4096)
    torch.testing.assert_close(a.cv_scores, b.cv_scores)
    torch.testing.assert_close(a.predict(x_new), b.predict(x_new), rtol=1e-4, atol=1e-4)


def test_recovers_signal_voxels_and_rejects_noise_voxels():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 40)).astype(np.float32)
    w = rng.standard_normal((40, 6))
    y = x @ w
    y[:, 3:] = 0
    y = (y + 0.5 * rng.standard_normal(y.shape)).astype(np.float32)
    fit = fit_ridge_cv(x, y, ALPHAS, device="cpu")
    assert (fit.best_cv_score[:3] > 0.9).all()
    assert (fit.best_cv_score[3:] < 0.4).all()


def test_bad_input_errors():
    x, y, _ = _data()
    with pytest.raises(ValueError, match="rows"):
        fit_ridge_cv(x[:-1], y, device="cpu")
    y_bad = y.copy()
    y_bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit_ridge_cv(x, y_bad, device="cpu")
    with pytest.raises(ValueError, match="score"):
        fit_ridge_cv(x, y, score="mse", device="cpu")
    with pytest.raises(ValueError, match="n_folds"):
        fit_ridge_cv(x, y, n_folds=1, device="cpu")


def test_layer_selection_picks_the_space_that_generated_each_voxel():
    rng = np.random.default_rng(4)
    xa, xb = (
        rng.standard_normal((150, 30)).astype(np.float32),
        rng.standard_normal((150, 60)).astype(np.float32),
    )
    y = np.concatenate([xa @ rng.standard_normal((30, 4)), xb @ rng.standard_normal((60, 5))], 1)
    y = (y + rng.standard_normal(y.shape)).astype(np.float32)
    sel = fit_layer_selection({"a": xa, "b": xb}, y, RidgeConfig.for_profile("quick"), device="cpu")
    assert sel.chosen.tolist() == [0] * 4 + [1] * 5
    pred = sel.predict({"a": xa, "b": xb})
    torch.testing.assert_close(pred[:, :4], sel.fits["a"].predict(xa)[:, :4])
    torch.testing.assert_close(pred[:, 4:], sel.fits["b"].predict(xb)[:, 4:])
