"""The one small interface every encoding model of the library follows (like scikit-learn's
estimators).

``training.ETECRMModel`` and ``two_step.TwoStepModel`` both have it, so a chapter, ``ablations`` or
a student's own model can fit and score any of them the same way::

    model = TwoStepModel("gwp_ridge", profile="quick").fit(ds, "V1")   # train split only
    result = model.score(ds)                                           # held-out test split
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .evaluation import EncodingResult


@runtime_checkable
class EncodingModel(Protocol):
    """``fit(dataset, roi)`` on the train split, ``predict(images)``, ``score(dataset)`` on the test
    split."""

    def fit(self, dataset, roi: str) -> "EncodingModel":
        """Fit on ``dataset.train`` for one ROI (never reads the test split); returns the model."""

    def predict(self, images) -> np.ndarray:
        """Predicted responses ``float32 (N, V)`` of the fitted ROI's voxels to images ``(N, H, W)``
        in [0, 1]."""

    def score(self, dataset, keep_predictions: bool = True) -> EncodingResult:
        """Held-out accuracy on ``dataset.test`` (``evaluation.score``)."""
