"""Bootstrap resamples of the test images, and how many of them a bootstrap needs.

Every bootstrap of the library (``evaluation.bootstrap_interval``, ``evaluation.paired_bootstrap``,
``evaluation.rank_correlation``, the data-size curves) draws its resamples with
:func:`image_resamples` and checks their number with :func:`check_resamples`: a 95% interval from
a handful of resamples is noise, and so is the verdict read from it.
"""

from __future__ import annotations

import torch

MIN_BOOTSTRAP = 100
"""The fewest resamples any bootstrap accepts (use 1000 or more for numbers you report)."""


def check_resamples(n_bootstrap, allow_none: bool = False) -> int:
    """``n_bootstrap`` as an int, refused (ValueError) below :data:`MIN_BOOTSTRAP` (0 too, unless
    ``allow_none``: then 0 means "no interval")."""
    if int(n_bootstrap) < MIN_BOOTSTRAP and not (allow_none and int(n_bootstrap) == 0):
        raise ValueError(
            f"n_bootstrap must be at least {MIN_BOOTSTRAP} resamples for a 95% interval, got "
            f"{n_bootstrap}; use 1000 or more for numbers you report (fewer resamples give a "
            "verdict that is noise)" + (" (or 0 for no interval)" if allow_none else "")
        )
    return int(n_bootstrap)


def image_resamples(n_images: int, n_resamples: int, generator: torch.Generator) -> torch.Tensor:
    """Bootstrap resamples of the test images as counts: ``(n_resamples, n_images)`` float64.

    Each row draws ``n_images`` images with replacement; entry (b, i) is how often image i was
    drawn.
    """
    idx = torch.randint(0, n_images, (n_resamples, n_images), generator=generator)
    ones = torch.ones(n_resamples, n_images, dtype=torch.float64)
    return torch.zeros(n_resamples, n_images, dtype=torch.float64).scatter_add_(1, idx, ones)
