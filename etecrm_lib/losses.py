"""Losses for end-to-end encoding: selective optimization in the released design, and its ablations.

All are pure torch functions of one mini-batch of one ROI: ``predictions`` and ``responses`` are
``(B, V)`` (B images, V voxels); each loss returns a scalar. r is always computed over the B images
of the batch, separately for every voxel. Leading axes are models trained side by side
(``batched.py``): ``(M, B, V)`` in, one loss per model ``(M,)`` out, each the loss of its own slice.

The authors' loss (https://github.com/KaiQiao1992/ETECRM, ``SFCNet5.py``), in our words::

    r_v  = Pearson correlation of voxel v over the batch
    loss = -mean_v(r_v ** 3) + 1e-4 * mean(predictions)

It is a **weighted correlation**: ``r_v ** 3 = w_v * r_v`` with the weight ``w_v = r_v ** 2``
(:func:`self_adapting_weights`). The weights adapt by themselves, batch after batch: a voxel the
network cannot predict has r near 0, so a weight near 0 and a gradient near 0 (``d(r^3)/dr = 3
r^2``), and it stops pulling the shared features toward its noise. The small mean term keeps the
predictions from drifting upward (correlation ignores offsets, the noise of noise regularization
does not). The plain correlation loss ``-mean_v(r_v)`` (all weights 1) is the ablation; MSE is a
further baseline.
"""

from __future__ import annotations

import torch

LOSSES = ("weighted_corr", "corr", "mse")
MEAN_PENALTY = 1e-4  # weight of mean(predictions) in the correlation losses (the released design)


def batch_pearson_r(
    predictions: torch.Tensor, responses: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Pearson r of each voxel over the batch, differentiable: ``(..., B, V), (..., B, V) ->
    (..., V)``.

    ``r_v = sum_b x_bv y_bv / sqrt((sum_b x_bv^2 + ex) (sum_b y_bv^2 + ey))``, x and y centred over
    the batch. ``ex`` and ``ey`` are ``eps`` times the mean over voxels of the sums of squares, so r
    does not depend on the units of either argument (scale all responses by 1e-5 and r stays the
    same), while a voxel that is constant over the batch gets r = 0 with a finite gradient. For
    reporting, use ``evaluation.pearson_r`` (float64, no eps).
    """
    x = predictions - predictions.mean(dim=-2, keepdim=True)
    y = responses - responses.mean(dim=-2, keepdim=True)
    sxx, syy = (x * x).sum(dim=-2), (y * y).sum(dim=-2)
    ex = eps * sxx.mean(dim=-1, keepdim=True).detach() + 1e-30
    ey = eps * syy.mean(dim=-1, keepdim=True).detach() + 1e-30
    return (x * y).sum(dim=-2) / torch.sqrt((sxx + ex) * (syy + ey))


def self_adapting_weights(r: torch.Tensor) -> torch.Tensor:
    """The voxel weights hidden in the weighted correlation loss: ``w_v = r_v ** 2``, ``(V,) ->
    (V,)``."""
    return r * r


def weighted_correlation_loss(
    predictions: torch.Tensor, responses: torch.Tensor, mean_penalty: float = MEAN_PENALTY
) -> torch.Tensor:
    """The released design's loss: ``-mean_v(r_v ** 3) + mean_penalty * mean(predictions)`` ->
    scalar (``(..., B, V)`` in: one loss per leading index).

    Equal to ``-mean_v(w_v r_v)`` with ``w_v = r_v ** 2`` (:func:`self_adapting_weights`).
    """
    r = batch_pearson_r(predictions, responses)
    return -(self_adapting_weights(r) * r).mean(-1) + mean_penalty * predictions.mean((-2, -1))


def correlation_loss(
    predictions: torch.Tensor, responses: torch.Tensor, mean_penalty: float = MEAN_PENALTY
) -> torch.Tensor:
    """Plain correlation loss, every voxel weighted 1: ``-mean_v(r_v) + mean_penalty *
    mean(predictions)``."""
    r = batch_pearson_r(predictions, responses)
    return -r.mean(-1) + mean_penalty * predictions.mean((-2, -1))


def mse_loss(
    predictions: torch.Tensor, responses: torch.Tensor, mean_penalty: float = 0.0
) -> torch.Tensor:
    """Mean squared error over images and voxels, in squared response units. ``mean_penalty`` is
    ignored (MSE fixes the offset itself); it is accepted so that every loss has the same
    signature."""
    return ((predictions - responses) ** 2).mean((-2, -1))


def loss_function(name: str):
    """The loss called ``name``: ``"weighted_corr"`` (the released design), ``"corr"`` or
    ``"mse"``."""
    functions = {
        "weighted_corr": weighted_correlation_loss,
        "corr": correlation_loss,
        "mse": mse_loss,
    }
    if name not in functions:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return functions[name]
