"""Automatic checks for the course exercises (book chapter 9).

Each ``check_*`` function takes the student's function, calls it on fresh random inputs (several
shapes, edge cases included) and compares the answer with the library's own implementation run on
the same inputs: the reference values are computed on the fly, never stored. A correct answer
prints a short confirmation and returns True; a wrong one raises ``AssertionError`` with a message
saying what was expected, what came back and a hint.

>>> from etecrm_lib.exercises import check_pearson_r
>>> check_pearson_r(my_pearson_r)
"""

from __future__ import annotations

import numpy as np


class ExerciseError(AssertionError):
    """The answer to an exercise is wrong (the message says how)."""


def _as_numpy(value, what: str) -> np.ndarray:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if value is None:
        raise ExerciseError(f"{what} returned None: did you forget the `return` statement?")
    return np.asarray(value, dtype=np.float64)


def compare(got, expected, what: str, hint: str = "", rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Raise :class:`ExerciseError` unless ``got`` has ``expected``'s shape and values (within tolerance)."""
    got = _as_numpy(got, what)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise ExerciseError(f"{what}: expected an array of shape {expected.shape}, got shape {got.shape}. {hint}".strip())
    if not np.all(np.isfinite(got)):
        bad = int(np.sum(~np.isfinite(got)))
        raise ExerciseError(f"{what}: {bad} value(s) are NaN or inf. {hint}".strip())
    close = np.isclose(got, expected, rtol=rtol, atol=atol)
    if not close.all():
        i = np.unravel_index(int(np.argmin(close.reshape(-1))), got.shape) if got.ndim else ()
        where = f" at index {tuple(int(k) for k in i)}" if got.ndim else ""
        raise ExerciseError(
            f"{what}: {int((~close).sum())} of {close.size} value(s) are wrong; "
            f"first{where}: expected {expected[i]:.6g}, got {got[i]:.6g}. {hint}".strip()
        )


def _passed(name: str, n_cases: int) -> bool:
    print(f"Correct: {name} agrees with the reference on {n_cases} test cases.")
    return True


# --------------------------------------------------------------------------- exercise 1
def check_pearson_r(student_fn, seed: int = 0) -> bool:
    """Exercise: ``pearson_r(predictions (N, V), responses (N, V)) -> r (V,)``, per-voxel Pearson r.

    Reference: :func:`etecrm_lib.evaluation.pearson_r`. Cases: random data, voxels on very
    different scales and offsets, and a single voxel.
    """
    from .evaluation import pearson_r

    rng = np.random.default_rng(seed)
    cases = []
    for n, v in [(30, 5), (12, 40), (50, 1)]:
        y = rng.normal(size=(n, v))
        x = 0.5 * y + rng.normal(size=(n, v))
        cases.append((x, y))
    y = rng.normal(size=(25, 6))
    cases.append((100.0 * y + rng.normal(size=(25, 6)) + 7.0, 0.01 * y - 3.0))  # scale and offset blind
    for k, (x, y) in enumerate(cases):
        compare(student_fn(x, y), pearson_r(x, y), f"pearson_r, case {k + 1} (N={x.shape[0]}, V={x.shape[1]})",
                hint="Centre both inputs over the images (axis 0), then divide the covariance by the product "
                     "of the standard deviations; return one r per voxel (column).")
    return _passed("pearson_r", len(cases))


# --------------------------------------------------------------------------- exercise 2
def check_noise_ceiling(student_fn, seed: int = 0) -> bool:
    """Exercise: ``noise_ceiling(repeats (R, N, V)) -> ceiling (V,)``.

    Reference: :func:`etecrm_lib.evaluation.noise_ceiling` (signal variance from the variance of the
    repeat mean minus noise variance / R). Cases: strong signal, weak signal, pure noise, R = 2.
    """
    from .evaluation import noise_ceiling

    rng = np.random.default_rng(seed)
    cases = []
    for n_rep, n, v, signal in [(5, 40, 6, 1.0), (3, 60, 4, 0.3), (13, 30, 5, 0.0), (2, 50, 3, 2.0)]:
        s = signal * rng.normal(size=(1, n, v))
        cases.append(s + rng.normal(size=(n_rep, n, v)))
    for k, repeats in enumerate(cases):
        compare(student_fn(repeats), noise_ceiling(repeats), f"noise_ceiling, case {k + 1} (R, N, V = {repeats.shape})",
                hint="Noise variance: variance over repeats (ddof=1) averaged over images. Signal variance: "
                     "variance over images of the repeat mean (ddof=1) minus noise variance / R, clipped at 0. "
                     "Ceiling: sqrt(signal / (signal + noise / R)).", atol=1e-4)
    return _passed("noise_ceiling", len(cases))


# --------------------------------------------------------------------------- exercise 3
def check_weighted_correlation_loss(student_fn, seed: int = 0) -> bool:
    """Exercise: ``weighted_correlation_loss(predictions (B, V), responses (B, V), weights (V,))`` in torch.

    Must return a scalar tensor ``1 - sum_v w_v r_v / sum_v w_v`` that gradients flow through.
    Reference: :func:`etecrm_lib.losses.weighted_correlation_loss`.
    """
    import torch

    from .losses import weighted_correlation_loss

    gen = torch.Generator().manual_seed(seed)
    cases = []
    for b, v in [(16, 8), (32, 3), (8, 20)]:
        y = torch.randn(b, v, generator=gen, dtype=torch.float64)
        x = 0.7 * y + torch.randn(b, v, generator=gen, dtype=torch.float64)
        w = torch.rand(v, generator=gen, dtype=torch.float64)
        cases.append((x, y, w))
    x, y, _ = cases[0]
    cases.append((x, y, torch.ones(x.shape[1], dtype=torch.float64)))            # equal weights: 1 - mean r
    cases.append((x, y, torch.tensor([1.0] + [0.0] * (x.shape[1] - 1), dtype=torch.float64)))  # one voxel only
    hint = ("Per voxel: centre prediction and response over the batch, r_v = covariance / product of norms; "
            "then loss = 1 - sum(w * r) / sum(w). Use torch operations only (no .numpy()).")
    for k, (x, y, w) in enumerate(cases):
        x = x.clone().requires_grad_(True)
        got = student_fn(x, y, w)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(f"weighted_correlation_loss must return a torch tensor, got {type(got).__name__}. {hint}")
        if got.numel() != 1:
            raise ExerciseError(f"weighted_correlation_loss must return a scalar, got shape {tuple(got.shape)}")
        compare(got.reshape(()), weighted_correlation_loss(x.detach(), y, w),
                f"weighted_correlation_loss, case {k + 1}", hint=hint, atol=1e-5)
        if not got.requires_grad:
            raise ExerciseError("the loss does not depend on the predictions through torch operations, so no "
                                "gradient can flow back to the network. " + hint)
        (grad,) = torch.autograd.grad(got.reshape(()), x)
        x_ref = x.detach().clone().requires_grad_(True)
        (grad_ref,) = torch.autograd.grad(weighted_correlation_loss(x_ref, y, w), x_ref)
        compare(grad, grad_ref, f"gradient of weighted_correlation_loss, case {k + 1}", hint=hint, atol=1e-4)
    return _passed("weighted_correlation_loss (value and gradient)", len(cases))


# --------------------------------------------------------------------------- exercise 4
def ridge_reference(features, responses, alpha: float) -> np.ndarray:
    """Ridge weights without intercept, ``argmin_w |y - X w|^2 + alpha |w|^2``: ``(N, F), (N,) -> (F,)``.

    Solved with scikit-learn (a trusted implementation, independent of the book's torch ridge).
    """
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(features, responses).coef_


def check_ridge_one_voxel(student_fn, seed: int = 0) -> bool:
    """Exercise: ``ridge_one_voxel(features (N, F), responses (N,), alpha) -> weights (F,)``, no intercept.

    Cases: more images than features, more features than images, and a large alpha (weights shrink).
    Reference: :func:`ridge_reference` (scikit-learn's Ridge).
    """
    rng = np.random.default_rng(seed)
    cases = []
    for n, f, alpha in [(80, 10, 1.0), (20, 50, 10.0), (60, 8, 1e4)]:
        x = rng.normal(size=(n, f))
        y = x @ rng.normal(size=f) + 0.5 * rng.normal(size=n)
        cases.append((x, y, alpha))
    for k, (x, y, alpha) in enumerate(cases):
        compare(student_fn(x, y, alpha), ridge_reference(x, y, alpha),
                f"ridge_one_voxel, case {k + 1} (N={x.shape[0]}, F={x.shape[1]}, alpha={alpha:g})",
                hint="Solve (X^T X + alpha I) w = X^T y with np.linalg.solve (not inv); "
                     "alpha is added to the diagonal only.", rtol=1e-4, atol=1e-6)
    return _passed("ridge_one_voxel", len(cases))


EXERCISES = {
    "pearson_r": check_pearson_r,
    "noise_ceiling": check_noise_ceiling,
    "weighted_correlation_loss": check_weighted_correlation_loss,
    "ridge_one_voxel": check_ridge_one_voxel,
}
