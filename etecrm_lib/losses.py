"""Losses for end-to-end encoding, and the self-adapting voxel weights of selective optimization.

All functions are pure torch functions of a batch of predictions and measured responses of one
ROI. Shapes: ``predictions`` and ``responses`` are ``(B, V)`` (B images of the batch, V voxels),
``weights`` is ``(V,)``; every loss returns a scalar. They also work under ``torch.func.vmap``
(``batched.py`` trains several models at once that way).

The paper's *weighted correlation loss* (Qiao et al. 2019, our reading in PAPER.md)::

    r_v  = Pearson correlation over the B images of the batch between prediction and response of voxel v
    loss = 1 - sum_v w_v r_v / sum_v w_v

With all weights equal it is the plain correlation loss ``1 - mean_v r_v``. The weights come from
:func:`voxel_weights_from_r`: voxels the model predicts well on held-back training images get a
large weight, voxels it cannot predict ("ineffective voxels") a weight near zero, so they stop
pulling the shared features toward noise. A weight of exactly 0 removes a voxel from the loss;
``batched.py`` uses that to mask the padded voxels of ROIs with fewer voxels.
"""

from __future__ import annotations

import torch

LOSSES = ("corr", "mse")


def batch_pearson_r(predictions: torch.Tensor, responses: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson r of each voxel over the batch: ``(B, V), (B, V) -> (V,)``.

    ``r_v = sum_b x_bv y_bv / sqrt((sum_b x_bv^2 + eps) (sum_b y_bv^2 + eps))`` with x, y centred
    over the batch. The ``eps`` (in squared response units) keeps the value and its gradient finite
    when a voxel's response (or prediction) is constant over the batch: such a voxel gets r = 0.
    """
    x = predictions - predictions.mean(dim=0, keepdim=True)
    y = responses - responses.mean(dim=0, keepdim=True)
    covariance = (x * y).sum(dim=0)
    return covariance / torch.sqrt(((x * x).sum(dim=0) + eps) * ((y * y).sum(dim=0) + eps))


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``sum_v w_v values_v / sum_v w_v`` (the plain mean when ``weights`` is None)."""
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum().clamp_min(1e-12)


def correlation_loss(predictions: torch.Tensor, responses: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - sum_v w_v r_v / sum_v w_v``, r over the batch: ``(B, V), (B, V), (V,) or None -> ()``.

    Blind to each voxel's scale and offset, like the evaluation metric. Without weights it is the
    plain correlation loss ``1 - mean_v r_v``; ranges from 0 (perfect) to 2.
    """
    return 1.0 - _weighted_mean(batch_pearson_r(predictions, responses), weights)


def weighted_correlation_loss(predictions: torch.Tensor, responses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The paper's loss, ``1 - sum_v w_v r_v / sum_v w_v``: :func:`correlation_loss` with weights required."""
    if weights is None:
        raise ValueError("weighted_correlation_loss needs voxel weights (V,); use correlation_loss for the unweighted one")
    return correlation_loss(predictions, responses, weights)


def mse_loss(predictions: torch.Tensor, responses: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error, averaged over the batch, then over voxels with weights: ``(B, V), (B, V), (V,) -> ()``.

    In squared response units (z-scored responses: 1 = predicting the mean).
    """
    per_voxel = ((predictions - responses) ** 2).mean(dim=0)
    return _weighted_mean(per_voxel, weights)


def encoding_loss(name: str, predictions: torch.Tensor, responses: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The loss called ``name`` (``"corr"`` or ``"mse"``), optionally voxel-weighted. Returns a scalar."""
    if name == "corr":
        return correlation_loss(predictions, responses, weights)
    if name == "mse":
        return mse_loss(predictions, responses, weights)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}; the paper's weighted correlation loss is "
                     "loss='corr' with voxel weights switched on")


def voxel_weights_from_r(r: torch.Tensor, power: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Self-adapting voxel weights from each voxel's held-back correlation: ``(V,) -> (V,)``.

    ``w_v = max(r_v, 0) ** power``, normalised to mean 1 over the voxels in ``mask`` (all voxels if
    ``mask`` is None; voxels outside it get 0). A voxel the model cannot predict (r <= 0) gets 0 and
    leaves the loss until the shared features start to predict it; ``power`` > 1 focuses the loss
    harder on the best voxels. If no voxel has r > 0 (e.g. right at the start), all weights are 1.
    """
    r = torch.nan_to_num(r.detach().float(), nan=0.0)
    mask = torch.ones_like(r, dtype=torch.bool) if mask is None else mask.bool()
    weights = torch.where(mask, r.clamp_min(0.0) ** power, torch.zeros_like(r))
    total, count = weights.sum(), mask.sum().clamp_min(1)
    uniform = mask.to(r.dtype)
    return torch.where(total > 0, weights * count / total.clamp_min(1e-12), uniform)
