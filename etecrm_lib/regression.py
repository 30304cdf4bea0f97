"""Voxel-wise ridge regression with a per-voxel alpha chosen by k-fold cross-validation (torch,
GPU-first).

The model of one voxel v is ``y_v = X w_v + b_v`` with the ridge penalty ``alpha_v * |w_v|^2``.
All voxels and all alphas are solved at once:

1. For each fold, the training part of X is diagonalised **once**:
   - *primal* (features <= samples): thin SVD ``X_tr = U diag(s) V^T`` (X centered on the fold);
   - *dual* (features > samples): eigendecomposition of the centered kernel ``K_tr = X_tr X_tr^T = Q
     diag(l) Q^T``.
   Then the held-out predictions of every alpha are ``A diag(f_alpha) U^T Y_tr`` with
   ``A = X_val V``, ``f = s / (s^2 + alpha)`` (primal) or ``A = K_val,tr Q``, ``U = Q``,
   ``f = 1 / (l + alpha)`` (dual). Changing alpha only rescales the columns of A: no new matrix
   inversion. The small matrices ``M_alpha = A diag(f_alpha) U^T`` (alphas x held-out x training
   images) are built once per fold, so every block of voxels costs one batched matrix product.
   In the dual form one kernel ``X X^T`` of all training images serves every fold and the refit
   (each fold's block is re-centered from it).
2. The **CV score** of each (alpha, voxel) is the score on the held-out fold, averaged over folds.
   By default it is the Pearson correlation (``score="r"``), the same metric the book reports on the
   test split; ``score="r2"`` gives the coefficient of determination instead.
3. Each voxel keeps its best alpha, and the model is refit on all training data with it.

Voxels are processed in chunks so that the (alphas x held-out images x voxels) block of predictions
stays small. Only training data ever enters these functions: the caller carves nothing out of the
test split (see ``two_step``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .device import get_device
from .evaluation import correlation
from .profiles import DEFAULT_PROFILE, Profile, check_profile

DEFAULT_ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-1.0, 9.0, 0.5))  # 20 values, 0.1 .. 3e8


@dataclass
class RidgeConfig:
    """How to fit voxel-wise ridge.

    alphas : the ridge penalties tried for every voxel (absolute values; features are z-scored by
        the caller, so a kernel eigenvalue is about n_features x n_samples at most)
    n_folds : k of the k-fold cross-validation on the training split (contiguous folds, like
        ``sklearn.model_selection.KFold`` without shuffling)
    score : "r" (Pearson correlation on held-out folds, the default) or "r2"
    voxel_chunk : voxels solved together (memory: alphas x fold size x voxel_chunk floats)
    """

    alphas: tuple = DEFAULT_ALPHAS
    n_folds: int = 5
    score: str = "r"
    voxel_chunk: int = 8192

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "RidgeConfig":
        """``"full"``: 20 alphas, 5 folds; ``"quick"``: 9 alphas, 3 folds; then ``changes``."""
        if check_profile(profile) == "quick":
            alphas = tuple(float(a) for a in 10.0 ** np.arange(0.0, 8.5, 1.0))
            return replace(cls(alphas=alphas, n_folds=3), **changes)
        return replace(cls(), **changes)


@dataclass
class RidgeFit:
    """A fitted voxel-wise ridge model: ``prediction = (x - x_mean) @ coef + y_mean``.

    alphas : float32 (V,) each voxel's chosen alpha
    cv_scores : float32 (n_alphas, V) mean held-out score of every alpha (see ``score``)
    alpha_grid : float32 (n_alphas,)
    score : "r" or "r2", the CV score used
    x_mean : float32 (P,), y_mean : float32 (V,) the training means
    With more features than images the fit is kept in the dual (kernel) form, ``coef = X_c^T
    dual_coef`` with ``dual_coef`` (N_train, V) and the training features ``x_train`` (N_train, P);
    the primal ``coef`` (P, V) is computed when first asked for (for P x V large it is big: 50k x
    25k = 5 GB).
    """

    alphas: torch.Tensor
    cv_scores: torch.Tensor
    alpha_grid: torch.Tensor
    x_mean: torch.Tensor
    y_mean: torch.Tensor
    score: str = "r"
    primal_coef: torch.Tensor | None = None
    dual_coef: torch.Tensor | None = None
    x_train: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    @property
    def best_cv_score(self) -> torch.Tensor:
        """float32 (V,): each voxel's CV score at its chosen alpha."""
        return self.cv_scores.max(dim=0).values

    @property
    def coef(self) -> torch.Tensor:
        """float32 (P, V): the weights on the centered features (computed from the dual form if
        needed)."""
        if self.primal_coef is None:
            c = self.dual_coef
            self.primal_coef = self.x_train.T @ c - self.x_mean[:, None] * c.sum(0)[None]
        return self.primal_coef

    @property
    def intercept(self) -> torch.Tensor:
        """float32 (V,): the intercept on the uncentered features, ``y_mean - x_mean @ coef``."""
        return self.y_mean - self.x_mean @ self.coef

    def predict(self, features, voxels=None) -> torch.Tensor:
        """Predicted responses ``(N, V)`` for features ``(N, P)`` (numpy or torch; result on the
        fit's device).

        ``voxels`` (boolean mask or indices) restricts the prediction to some voxels.
        """
        x = _to_tensor(features, self.x_mean.device)
        if x.ndim != 2 or x.shape[1] != self.x_mean.shape[0]:
            raise ValueError(
                f"features must be (N, {self.x_mean.shape[0]}), got shape {tuple(x.shape)}"
            )
        sel = slice(None) if voxels is None else voxels
        xc = x - self.x_mean
        if self.primal_coef is None and self.dual_coef is not None:
            c = self.dual_coef[:, sel]
            return (
                (xc @ self.x_train.T) @ c
                - (xc @ self.x_mean)[:, None] * c.sum(0)[None]
                + self.y_mean[sel]
            )
        return xc @ self.coef[:, sel] + self.y_mean[sel]


def kfold_indices(n_samples: int, n_folds: int) -> list:
    """Contiguous k-fold splits ``[(train_idx, val_idx), ...]`` (same folds as sklearn's
    ``KFold(n_folds)``)."""
    if not 2 <= n_folds <= n_samples:
        raise ValueError(
            f"n_folds must be between 2 and the number of samples ({n_samples}), got {n_folds}"
        )
    sizes = np.full(n_folds, n_samples // n_folds)
    sizes[: n_samples % n_folds] += 1
    stops = np.cumsum(sizes)
    idx = np.arange(n_samples)
    return [
        (np.concatenate([idx[: stop - size], idx[stop:]]), idx[stop - size : stop])
        for size, stop in zip(sizes, stops)
    ]


# ----------------------------------------------------------------------------- the decomposition
def _primal_basis(x_tr: torch.Tensor, x_val: torch.Tensor | None):
    """Thin SVD of the centered training block ``X_tr = U diag(s) V^T``. Returns ``(s, A, U, V)``
    with ``A = X_val V``: held-out predictions are ``A diag(f) U^T Y``, weights ``V diag(f) U^T
    Y``."""
    u, s, vt = torch.linalg.svd(x_tr, full_matrices=False)
    return s, None if x_val is None else x_val @ vt.T, u, vt.T


def _dual_basis(k_tr: torch.Tensor, k_val: torch.Tensor | None):
    """Eigendecomposition of the centered training kernel ``K_tr = Q diag(l) Q^T``. Returns ``(l, A,
    Q)`` with ``A = K_val,tr Q``: held-out predictions are ``A diag(f) Q^T Y``, dual coefficients
    ``Q diag(f) Q^T Y``."""
    lam, q = torch.linalg.eigh(k_tr)
    return lam.clamp_min(0), None if k_val is None else k_val @ q, q


def _filters(spectrum: torch.Tensor, alphas: torch.Tensor, dual: bool) -> torch.Tensor:
    """(n_alphas, r): the spectral filter f(alpha) of each alpha: s/(s^2+a) (primal) or 1/(l+a)
    (dual)."""
    if dual:
        return 1.0 / (spectrum[None, :] + alphas[:, None])
    return spectrum[None, :] / (spectrum[None, :] ** 2 + alphas[:, None])


def _center_kernel(k_full: torch.Tensor, train: torch.Tensor, val: torch.Tensor):
    """Kernel blocks of X centered by the mean of the training rows, from the uncentered full
    kernel."""
    k_tt = k_full[train][:, train]
    k_vt = k_full[val][:, train]
    col_mean = k_tt.mean(0)  # x_j . m  for each training row j
    grand = col_mean.mean()  # m . m
    k_tt = k_tt - col_mean[None, :] - col_mean[:, None] + grand
    k_vt = k_vt - k_vt.mean(1, keepdim=True) - col_mean[None, :] + grand
    return k_tt, k_vt


def _fold_scores(a, u, f, y_tr, y_val, score: str, chunk: int) -> torch.Tensor:
    """Held-out score of every alpha for every voxel of one fold: ``(n_alphas, V)``.

    ``M_alpha = A diag(f_alpha) U^T`` (alphas x held-out x training images) maps training responses
    to held-out predictions; it is small, so it is built once and every voxel chunk costs one
    batched product.
    """
    y_mean = y_tr.mean(0)
    if score == "r":
        a = a - a.mean(0, keepdim=True)  # centered predictions: the correlation ignores offsets
    m = torch.matmul(a[None] * f[:, None, :], u.T)  # (n_alphas, n_val, n_tr)
    out = []
    for start in range(0, y_tr.shape[1], chunk):
        sl = slice(start, start + chunk)
        pred = torch.matmul(m, y_tr[:, sl] - y_mean[sl])  # (n_alphas, n_val, Vc)
        yv = y_val[:, sl]
        if score == "r":
            out.append(correlation(pred, yv))  # (n_alphas, Vc)
        else:
            resid = (yv - y_mean[sl]) - pred
            var = (yv - yv.mean(0)).square().sum(0)
            r2 = 1 - resid.square().sum(1) / var.clamp_min(1e-12)
            out.append(torch.where(var[None] > 0, r2, torch.zeros_like(r2)))
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------- the public functions
def ridge_cv_scores(
    features,
    responses,
    alphas=DEFAULT_ALPHAS,
    folds=None,
    n_folds: int = 5,
    score: str = "r",
    voxel_chunk: int = 8192,
    device=None,
) -> torch.Tensor:
    """Mean held-out score of every alpha for every voxel: ``(n_alphas, V)`` float32.

    features ``(N, P)``, responses ``(N, V)``, both from the TRAINING split; ``folds`` a list of
    ``(train_idx, val_idx)`` (default: :func:`kfold_indices`).
    """
    x, y, alpha_t, folds, device = _prepare(
        features, responses, alphas, folds, n_folds, score, device
    )
    k_full = x @ x.T if _use_dual(x, folds) else None
    return _cv_scores(x, y, alpha_t, folds, score, voxel_chunk, k_full)


def _use_dual(x, folds) -> bool:
    """The kernel form is cheaper when there are more features than training images in a fold."""
    return x.shape[1] > x.shape[0] - max(len(v) for _, v in folds)


def _cv_scores(x, y, alpha_t, folds, score, voxel_chunk, k_full=None):
    total = torch.zeros(len(alpha_t), y.shape[1], device=x.device)
    for train, val in folds:
        tr, va = torch.as_tensor(train, device=x.device), torch.as_tensor(val, device=x.device)
        if k_full is not None:
            spectrum, a, u = _dual_basis(*_center_kernel(k_full, tr, va))
        else:
            m = x[tr].mean(0)
            spectrum, a, u, _ = _primal_basis(x[tr] - m, x[va] - m)
        total += _fold_scores(
            a, u, _filters(spectrum, alpha_t, k_full is not None), y[tr], y[va], score, voxel_chunk
        )
    return total / len(folds)


def fit_ridge_cv(
    features,
    responses,
    alphas=DEFAULT_ALPHAS,
    folds=None,
    n_folds: int = 5,
    score: str = "r",
    voxel_chunk: int = 8192,
    device=None,
) -> RidgeFit:
    """Fit voxel-wise ridge; every voxel gets the alpha with the best mean k-fold CV score.

    Parameters
    ----------
    features : (N_train, P) array or tensor (train split only)
    responses : (N_train, V) array or tensor (train split only)
    alphas : the grid of penalties; folds / n_folds : the CV splits; score : "r" or "r2"

    Returns a :class:`RidgeFit` on ``device`` (default: the GPU when there is one).
    Ties (equal CV score, e.g. where r no longer changes with alpha) go to the larger alpha.
    """
    x, y, alpha_t, folds, device = _prepare(
        features, responses, alphas, folds, n_folds, score, device
    )
    dual = _use_dual(x, folds)
    k_full = x @ x.T if dual else None  # one (uncentered) kernel serves every fold and the refit
    cv = _cv_scores(x, y, alpha_t, folds, score, voxel_chunk, k_full)
    tie_break = torch.log(alpha_t)[:, None] * 1e-7  # like himalaya: prefer larger alphas when equal
    voxel_alpha = alpha_t[(cv + tie_break).argmax(0)]
    # refit on all training data, each voxel with its own alpha
    x_mean, y_mean = x.mean(0), y.mean(0)
    everything = torch.arange(x.shape[0], device=device)
    if dual:
        spectrum, _, u = _dual_basis(_center_kernel(k_full, everything, everything)[0], None)
    else:
        spectrum, _, u, v = _primal_basis(x - x_mean, None)
    solved = torch.empty(u.shape[0] if dual else x.shape[1], y.shape[1], device=device)
    for start in range(0, y.shape[1], voxel_chunk):
        sl = slice(start, start + voxel_chunk)
        f = _filters(spectrum, voxel_alpha[sl], dual).T  # (r, Vc): each voxel's own filter
        b = f * (u.T @ (y[:, sl] - y_mean[sl]))
        solved[:, sl] = u @ b if dual else v @ b  # dual coefficients or weights
    info = {
        "n_folds": len(folds),
        "solver": "dual (kernel eigh)" if dual else "primal (svd)",
        "device": str(device),
    }
    if dual:
        return RidgeFit(
            voxel_alpha, cv, alpha_t, x_mean, y_mean, score, dual_coef=solved, x_train=x, info=info
        )
    return RidgeFit(voxel_alpha, cv, alpha_t, x_mean, y_mean, score, primal_coef=solved, info=info)


def _prepare(features, responses, alphas, folds, n_folds, score, device):
    device = get_device(device)
    x = _to_tensor(features, device)
    y = _to_tensor(responses, device)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"features must be (N, P) and responses (N, V); got shapes {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"features have {x.shape[0]} rows (images) but responses have {y.shape[0]}"
        )
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError(
            "features and responses must be finite (no NaN/inf): drop or impute bad "
            "voxels/images first"
        )
    if score not in ("r", "r2"):
        raise ValueError(f"score must be 'r' (correlation) or 'r2', got {score!r}")
    alpha_t = torch.as_tensor(
        np.asarray(alphas, dtype=np.float32) if not isinstance(alphas, torch.Tensor) else alphas,
        dtype=torch.float32,
        device=device,
    ).reshape(-1)
    if alpha_t.numel() == 0 or (alpha_t <= 0).any():
        raise ValueError("alphas must be a non-empty list of positive numbers")
    folds = (
        kfold_indices(x.shape[0], n_folds)
        if folds is None
        else [(np.asarray(t), np.asarray(v)) for t, v in folds]
    )
    return x, y, alpha_t, folds, device


def _to_tensor(a, device):
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=torch.float32)
    return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)


# --------------------------------------------------------------------------- several feature spaces
@dataclass
class LayerSelection:
    """Ridge fits on several feature spaces (e.g. CNN layers); each voxel keeps its best space.

    fits : dict name -> RidgeFit (all voxels)
    chosen : int64 (V,) index into ``names`` of each voxel's space
    names : list of the feature-space names, in order
    """

    fits: dict
    chosen: torch.Tensor
    names: list

    def predict(self, features: dict) -> torch.Tensor:
        """``features`` dict name -> (N, P_name); returns ``(N, V)`` using each voxel's chosen
        space."""
        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f"features for {missing} are missing; give all of {self.names}")
        out = None
        for i, name in enumerate(self.names):
            mask = self.chosen == i
            if not mask.any():
                continue
            pred = self.fits[name].predict(features[name], voxels=mask)
            if out is None:
                out = torch.zeros(pred.shape[0], self.chosen.numel(), device=pred.device)
            out[:, mask] = pred
        return out


def fit_layer_selection(
    features: dict, responses, config: RidgeConfig | None = None, device=None
) -> LayerSelection:
    """Fit ridge on each feature space of ``features`` (name -> (N, P)); each voxel keeps the space
    with the best cross-validated score (at its own best alpha). Training data only."""
    config = config or RidgeConfig()
    if not features:
        raise ValueError("give at least one feature space (dict name -> (N, P) array)")
    names = list(features)
    fits = {
        name: fit_ridge_cv(
            features[name],
            responses,
            config.alphas,
            n_folds=config.n_folds,
            score=config.score,
            voxel_chunk=config.voxel_chunk,
            device=device,
        )
        for name in names
    }
    best = torch.stack([fits[n].best_cv_score for n in names])  # (n_spaces, V)
    return LayerSelection(fits, best.argmax(0), names)
