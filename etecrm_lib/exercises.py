"""Automatic checks for the course exercises (``book/10_exercises.ipynb``, for chapters 1-9).

Each ``check_*`` function takes the student's function (or result), calls it on fresh random inputs
(several shapes, edge cases included) and compares the answer with a reference computed on the
fly by a small formula written here, independently of the library code the student is rewriting
(ridge: scikit-learn). No reference value is stored. A correct answer prints a short confirmation
(and returns None, so a notebook cell shows only that line); a wrong one raises
:class:`ExerciseError` saying what was expected, what came back and a hint. ``EXERCISES`` maps the
name of each function a student writes to its check (``etecrm_lib.course.grade_folder`` runs them
on submitted notebooks).

>>> from etecrm_lib.exercises import check_pearson_r
>>> check_pearson_r(my_pearson_r)
"""

from __future__ import annotations

import numpy as np

from .evaluation import Comparison, EncodingResult, paired_bootstrap, verdict


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


def compare(
    got, expected, what: str, hint: str = "", rtol: float = 1e-4, atol: float = 1e-5
) -> None:
    """Raise :class:`ExerciseError` unless ``got`` has ``expected``'s shape and values (within
    tolerance)."""
    got = _as_numpy(got, what)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise ExerciseError(
            f"{what}: expected an array of shape {expected.shape}, got shape {got.shape}. "
            f"{hint}".strip()
        )
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


def _passed(name: str, n_cases: int) -> None:
    print(f"Correct: {name} agrees with the reference on {n_cases} test cases.")


# ------------------------------------------------------------------ the references (small formulas)
def pearson_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-column Pearson r in float64: ``(N, V), (N, V) -> (V,)``."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    return (x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0))


def noise_ceiling_reference(repeats: np.ndarray) -> np.ndarray:
    """Noise ceiling of the mean of R repeats: ``(R, N, V) -> (V,)`` (the formula of chapter 1)."""
    repeats = np.asarray(repeats, np.float64)
    n_rep = repeats.shape[0]
    noise = repeats.var(axis=0, ddof=1).mean(axis=0)
    signal = np.clip(repeats.mean(axis=0).var(axis=0, ddof=1) - noise / n_rep, 0, None)
    return np.sqrt(signal / (signal + noise / n_rep))


def ridge_reference(features, responses, alpha: float) -> np.ndarray:
    """Ridge weights without intercept, ``argmin_w |y - X w|^2 + alpha |w|^2``: ``(N, F), (N,) ->
    (F,)``.

    Solved with scikit-learn (a trusted implementation, independent of the book's torch ridge).
    """
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(features, responses).coef_


def etecrm_loss_reference(predictions, responses):
    """ETECRM's loss on a batch, in torch: ``-mean_v(r_v ** 3) + 1e-4 * mean(predictions)``.

    ``r_v`` is voxel v's Pearson r over the B images of the batch: ``(B, V), (B, V) -> scalar``.
    """
    x = predictions - predictions.mean(dim=0)
    y = responses - responses.mean(dim=0)
    r = (x * y).sum(dim=0) / ((x * x).sum(dim=0) * (y * y).sum(dim=0)).sqrt()
    return -(r**3).mean() + 1e-4 * predictions.mean()


def layer_choice_reference(val_r, test_r) -> np.ndarray:
    """Per voxel, the test r of the layer of highest validation r: ``(L, V), (L, V) -> (V,)``."""
    val_r, test_r = np.asarray(val_r, np.float64), np.asarray(test_r, np.float64)
    return test_r[np.argmax(val_r, axis=0), np.arange(val_r.shape[1])]


def parameter_count_reference(image_size: int, n_voxels: int, channels: int, n_layers: int) -> int:
    """Trainable numbers of the released network: conv layers (3x3, stride 2, padding 1, with
    biases) on a one-channel image, then a read-out with one weight per feature and voxel, plus a
    bias per voxel.
    """
    total, c_in, side = 0, 1, image_size
    for _ in range(n_layers):
        total += c_in * channels * 3 * 3 + channels
        side = (side + 2 * 1 - 3) // 2 + 1  # output side of a convolution
        c_in = channels
    return total + c_in * side * side * n_voxels + n_voxels


def pull_reference(r) -> np.ndarray:
    """``-d/dr_v`` of ``-mean_v(r_v ** 3)``: ``3 r_v ** 2 / V``, ``(V,) -> (V,)``."""
    r = np.asarray(r, np.float64)
    return 3 * r**2 / r.size


def first_size_ahead_reference(sizes, r_a, r_b):
    """The smallest size from which ``r_a > r_b`` at it and every larger size, else None."""
    first = None
    for size, a, b in reversed(list(zip(sizes, r_a, r_b))):
        if not a > b:
            break
        first = int(size)
    return first


def top_k_mean_reference(select_r, report_r, k: int) -> float:
    """Mean of ``report_r`` over the ``k`` voxels with the highest ``select_r``."""
    order = np.argsort(-np.asarray(select_r, np.float64), kind="stable")[:k]
    return float(np.mean(np.asarray(report_r, np.float64)[order]))


# --------------------------------------------------------------------------- chapter 1
def check_pearson_r(student_fn, seed: int = 0) -> None:
    """Exercise: ``pearson_r(predictions (N, V), responses (N, V)) -> r (V,)``, per-voxel Pearson r.

    Cases: random data, voxels on very different scales and offsets, and a single voxel.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for n, v in [(30, 5), (12, 40), (50, 1)]:
        y = rng.normal(size=(n, v))
        x = 0.5 * y + rng.normal(size=(n, v))
        cases.append((x, y))
    y = rng.normal(size=(25, 6))
    cases.append(
        (100.0 * y + rng.normal(size=(25, 6)) + 7.0, 0.01 * y - 3.0)
    )  # scale and offset blind
    for k, (x, y) in enumerate(cases):
        compare(
            student_fn(x, y),
            pearson_reference(x, y),
            f"pearson_r, case {k + 1} (N={x.shape[0]}, V={x.shape[1]})",
            hint="Centre both inputs over the images (axis 0), then divide the covariance by "
            "the product "
            "of the standard deviations; return one r per voxel (column).",
        )
    return _passed("pearson_r", len(cases))


# --------------------------------------------------------------------------- chapter 1 (second)
def check_noise_ceiling(student_fn, seed: int = 0) -> None:
    """Exercise: ``noise_ceiling(repeats (R, N, V)) -> ceiling (V,)``.

    Cases: strong signal, weak signal, pure noise, R = 2.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for n_rep, n, v, signal in [
        (5, 40, 6, 1.0),
        (3, 60, 4, 0.3),
        (13, 30, 5, 0.0),
        (2, 50, 3, 2.0),
    ]:
        s = signal * rng.normal(size=(1, n, v))
        cases.append(s + rng.normal(size=(n_rep, n, v)))
    for k, repeats in enumerate(cases):
        compare(
            student_fn(repeats),
            noise_ceiling_reference(repeats),
            f"noise_ceiling, case {k + 1} (R, N, V = {repeats.shape})",
            hint="Noise variance: variance over repeats (ddof=1) averaged over images. Signal "
            "variance: "
            "variance over images of the repeat mean (ddof=1) minus noise variance / R, "
            "clipped at 0. "
            "Ceiling: sqrt(signal / (signal + noise / R)).",
            atol=1e-4,
        )
    return _passed("noise_ceiling", len(cases))


# --------------------------------------------------------------------------- chapter 2
def check_ridge_one_voxel(student_fn, seed: int = 0) -> None:
    """Exercise: ``ridge_one_voxel(features (N, F), responses (N,), alpha) -> weights (F,)``, no
    intercept.

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
        compare(
            student_fn(x, y, alpha),
            ridge_reference(x, y, alpha),
            f"ridge_one_voxel, case {k + 1} (N={x.shape[0]}, F={x.shape[1]}, alpha={alpha:g})",
            hint="Solve (X^T X + alpha I) w = X^T y with np.linalg.solve (not inv); "
            "alpha is added to the diagonal only.",
            rtol=1e-4,
            atol=1e-6,
        )
    return _passed("ridge_one_voxel", len(cases))


# --------------------------------------------------------------------------- chapter 3
def check_layer_choice(student_fn, seed: int = 0) -> None:
    """Exercise: ``layer_choice(val_r (L, V), test_r (L, V)) -> (V,)``: per voxel, the test r of the
    layer (or feature set) with the highest validation r.

    Cases: several layers, one layer, one voxel, and test r that disagree with validation r (picking
    by test r is caught).
    """
    rng = np.random.default_rng(seed)
    cases = [
        rng.normal(size=(2, n_layers, v)) for n_layers, v in [(5, 30), (1, 8), (4, 1), (8, 200)]
    ]
    hint = (
        "Validation r decides which layer each voxel uses (the test images are only for "
        "reporting); then read that layer's test r, one number per voxel."
    )
    for k, (val_r, test_r) in enumerate(cases):
        compare(
            student_fn(val_r, test_r),
            layer_choice_reference(val_r, test_r),
            f"layer_choice, case {k + 1} (L={val_r.shape[0]}, V={val_r.shape[1]})",
            hint=hint,
        )
    return _passed("layer_choice", len(cases))


# --------------------------------------------------------------------------- chapter 4
def check_parameter_count(student_fn) -> None:
    """Exercise: ``parameter_count(image_size, n_voxels, channels, n_layers) -> int``: the trainable
    numbers of the released network (see :func:`parameter_count_reference`).

    Cases: the released design (128 px, 128 channels, 3 layers), the quick profile, small networks.
    """
    cases = [(128, 1331, 128, 3), (64, 120, 128, 3), (32, 7, 16, 2), (16, 1, 4, 1), (96, 50, 8, 3)]
    hint = (
        "Count layer by layer: a convolution has one 3x3 kernel per (input channel, output "
        "channel) pair plus one bias per output channel; each layer halves the image side; the "
        "read-out has one weight per (feature, voxel) pair plus one bias per voxel."
    )
    for k, args in enumerate(cases):
        got = student_fn(*args)
        expected = parameter_count_reference(*args)
        if got is None or int(got) != expected:
            raise ExerciseError(
                f"parameter_count, case {k + 1} (image_size, n_voxels, channels, n_layers = "
                f"{args}): expected {expected:,}, got {got}. {hint}"
            )
    return _passed("parameter_count", len(cases))


# --------------------------------------------------------------------------- chapter 5
def check_voxel_pull(student_fn, seed: int = 0) -> None:
    """Exercise: ``voxel_pull(r (V,)) -> (V,)``: how hard each voxel pulls on the network, the
    derivative ``-dL/dr_v`` of the loss ``L = -mean_v(r_v ** 3)``.

    Cases: random r of both signs, one voxel, r = 0 (no pull at all).
    """
    rng = np.random.default_rng(seed)
    cases = [rng.uniform(-1, 1, size=v) for v in (10, 1, 300)] + [np.array([0.8, 0.3, 0.0, -0.5])]
    for k, r in enumerate(cases):
        compare(
            student_fn(r.copy()),
            pull_reference(r),
            f"voxel_pull, case {k + 1} (V={r.size})",
            hint="Differentiate the loss with respect to each r_v (by hand or with "
            "torch.autograd); mind the mean over the V voxels and the minus sign.",
        )
    return _passed("voxel_pull", len(cases))


# --------------------------------------------------------------------------- chapter 6
def check_weighted_correlation_loss(student_fn, seed: int = 0) -> None:
    """Exercise: ETECRM's loss ``weighted_correlation_loss(predictions (B, V), responses (B, V))``
    in torch.

    Must return the scalar tensor ``-mean_v(r_v ** 3) + 1e-4 * mean(predictions)``, with gradients
    flowing to ``predictions``. Cases: random batches, a voxel anticorrelated with its prediction
    (r^3 keeps the sign), predictions far from zero (the mean term matters), one voxel.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    cases = []
    for b, v in [(16, 8), (64, 3), (8, 20), (32, 1)]:
        y = torch.randn(b, v, generator=gen, dtype=torch.float64)
        x = 0.7 * y + torch.randn(b, v, generator=gen, dtype=torch.float64)
        cases.append((x, y))
    x, y = cases[0]
    cases.append((torch.cat([-x[:, :1], x[:, 1:]], dim=1), y))  # first voxel anticorrelated
    cases.append((x + 50.0, y))  # large predictions: 1e-4 * mean = 0.005
    hint = (
        "Per voxel, r_v is your exercise 1 (pearson_r) over the batch, written with torch "
        "operations (dim=0); then the formula of the exercise. Use torch operations only, so that "
        "the gradient reaches the predictions."
    )
    for k, (x, y) in enumerate(cases):
        x = x.clone().requires_grad_(True)
        got = student_fn(x, y)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(
                "weighted_correlation_loss must return a torch tensor, got "
                f"{type(got).__name__}. {hint}"
            )
        if got.numel() != 1:
            raise ExerciseError(
                "weighted_correlation_loss must return a scalar, got shape "
                f"{tuple(got.shape)}. {hint}"
            )
        compare(
            got.reshape(()),
            etecrm_loss_reference(x.detach(), y),
            f"weighted_correlation_loss, case {k + 1} (B={x.shape[0]}, V={x.shape[1]})",
            hint=hint,
            atol=1e-6,
        )
        if not got.requires_grad:
            raise ExerciseError(
                "the loss does not depend on the predictions through torch operations, so no "
                "gradient can flow back to the network. " + hint
            )
        (grad,) = torch.autograd.grad(got.reshape(()), x)
        x_ref = x.detach().clone().requires_grad_(True)
        (grad_ref,) = torch.autograd.grad(etecrm_loss_reference(x_ref, y), x_ref)
        compare(
            grad,
            grad_ref,
            f"gradient of weighted_correlation_loss, case {k + 1}",
            hint=hint,
            atol=1e-6,
        )
    return _passed("weighted_correlation_loss (value and gradient)", len(cases))


# --------------------------------------------------------------------------- chapter 7
def check_add_prediction_noise(student_fn, seed: int = 0) -> None:
    """Exercise: ``add_prediction_noise(predictions (B, V), training: bool, noise_std=1.0) -> (B,
    V)`` in torch.

    In training: ``predictions`` plus fresh Gaussian noise of standard deviation ``noise_std``;
    otherwise ``predictions`` unchanged. Checked: the noise has mean 0 and the asked s.d. (on
    200,000 numbers, within 1 %), it differs between calls, the input is not modified in place,
    gradients reach ``predictions`` unchanged, and nothing is added when ``training`` is False.
    """
    import torch

    torch.manual_seed(seed)
    hint = (
        "In training, add fresh Gaussian noise of s.d. noise_std, of the predictions' shape, "
        "drawn anew on every call, to a new tensor (never into the input); otherwise leave the "
        "predictions as they are."
    )
    x = torch.randn(500, 400, dtype=torch.float64)
    for noise_std in (1.0, 0.5):
        given = x.clone()
        out = student_fn(given, training=True, noise_std=noise_std)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise ExerciseError(
                f"add_prediction_noise must return a tensor of shape {tuple(x.shape)}, got "
                f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}. {hint}"
            )
        if not torch.equal(given, x):
            raise ExerciseError(
                "add_prediction_noise changed its input in place (+=): return a new tensor. " + hint
            )
        noise = (out.detach() - x).reshape(-1)
        mean, std = float(noise.mean()), float(noise.std())
        if abs(mean) > 0.01 * noise_std or abs(std - noise_std) > 0.01 * noise_std:
            raise ExerciseError(
                f"with noise_std={noise_std} the added noise has mean {mean:.4f} and s.d. "
                f"{std:.4f}; "
                f"expected mean 0 and s.d. {noise_std}. {hint}"
            )
        again = (student_fn(x.clone(), training=True, noise_std=noise_std) - x).reshape(-1)
        if torch.allclose(again, noise):
            raise ExerciseError(
                "two calls added the same noise: draw new noise every time (torch.randn_like). "
                + hint
            )
        leaf = x.clone().requires_grad_(True)
        out = student_fn(leaf, training=True, noise_std=noise_std)
        if not out.requires_grad:
            raise ExerciseError(
                "no gradient flows from the noisy predictions back to the network. " + hint
            )
        (grad,) = torch.autograd.grad(out.sum(), leaf)
        compare(grad, np.ones(tuple(x.shape)), "gradient of the noisy predictions", hint=hint)
    for kwargs in ({}, {"noise_std": 1.0}):
        out = student_fn(x, training=False, **kwargs)
        if out is None or not torch.equal(torch.as_tensor(out), x):
            raise ExerciseError(
                "with training=False the predictions must come back unchanged: "
                "noise is a training-only regularizer (evaluation sees clean predictions). " + hint
            )
    return _passed("add_prediction_noise", 6)


# --------------------------------------------------------------------------- chapter 7 (second)
def check_verdict(student_fn) -> None:
    """Exercise: ``verdict(comparison) -> "better" | "worse" | "no reliable difference"``.

    ``comparison`` is an :class:`evaluation.Comparison` (model A minus model B with a 95% paired
    bootstrap interval ``ci_low``..``ci_high``): "better" when the whole interval lies above 0,
    "worse" when it lies below 0, otherwise "no reliable difference" (an interval touching 0 too).
    """
    cases = [
        (0.05, 0.02, 0.08),
        (-0.04, -0.07, -0.01),
        (0.01, -0.02, 0.04),
        (0.03, 0.0, 0.06),
        (-0.02, -0.05, 0.0),
        (0.2, 0.15, 0.25),
        (0.0, -0.001, 0.001),
    ]
    for k, (diff, low, high) in enumerate(cases):
        c = Comparison("etecrm", "etecrm_no_noise", "V1", "median_r", diff, low, high, 0.5, 1000)
        expected = verdict(c, short=True)
        got = student_fn(c)
        if got != expected:
            raise ExerciseError(
                f"verdict, case {k + 1}: difference {diff:+.3f}, 95% interval [{low:+.3f}, "
                f"{high:+.3f}]: "
                f"expected {expected!r}, got {got!r}. Read the interval, not the "
                "difference: only an "
                "interval entirely above (below) 0 says A is better (worse); one that contains 0 "
                "(or touches it) is no reliable difference."
            )
    return _passed("verdict", len(cases))


def check_ablation_comparison(
    comparison, result_a, result_b, responses, n_bootstrap: int = 1000, seed: int = 0
) -> None:
    """The student's comparison of two ablation results: right models, ROI, and the paired
    bootstrap's numbers.

    Recomputes ``evaluation.paired_bootstrap(result_a, result_b, responses, "median_r", n_bootstrap,
    seed=seed)`` (the library's own function; the exercise is to call it on the right things and
    read it).
    """
    if not isinstance(comparison, Comparison):
        raise ExerciseError(
            "expected the Comparison returned by evaluation.paired_bootstrap, got "
            f"{type(comparison).__name__}"
        )
    if (comparison.model_a, comparison.model_b) != (result_a.model, result_b.model):
        raise ExerciseError(
            f"the comparison is {comparison.model_a} - {comparison.model_b}; the exercise asks for "
            f"{result_a.model} - {result_b.model} (pass the full model first)"
        )
    if comparison.statistic != "median_r":
        raise ExerciseError(
            f"compare the median r (statistic='median_r'), not {comparison.statistic!r}"
        )
    expected = paired_bootstrap(
        result_a, result_b, responses, "median_r", n_bootstrap=n_bootstrap, seed=seed
    )
    for name in ("difference", "ci_low", "ci_high"):
        compare(
            getattr(comparison, name),
            getattr(expected, name),
            f"comparison.{name}",
            hint=f"call evaluation.paired_bootstrap(a, b, ds.test.responses[roi], 'median_r', "
            f"n_bootstrap={n_bootstrap}, seed={seed}) with the test responses of the same ROI",
        )
    return _passed("the ablation comparison", 3)


def check_compare_ablation(student_fn, seed: int = 0) -> None:
    """Exercise: ``compare_ablation(full, ablated, responses, seed=0) -> Comparison``, checked on
    two made-up results (no training): the full model first, the median r's paired bootstrap.
    """
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(40, 30))
    full, ablated = (
        EncodingResult(
            name, "V1", "sim", 1, np.zeros(30), predictions=y + s * rng.normal(size=y.shape)
        )
        for name, s in (("etecrm", 1.0), ("etecrm_no_noise", 2.0))
    )
    return check_ablation_comparison(
        student_fn(full, ablated, y, seed=seed), full, ablated, y, seed=seed
    )


# --------------------------------------------------------------------------- chapter 8
def check_top_k_mean_r(student_fn, seed: int = 0) -> None:
    """Exercise: ``top_k_mean_r(select_r (V,), report_r (V,), k) -> float``.

    The mean of ``report_r`` over the ``k`` voxels with the highest ``select_r``. Cases: selection
    and report from the same numbers, from different numbers, k = 1 and k = V.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for v, k in [(50, 10), (300, 1), (20, 20), (1000, 300)]:
        a, b = rng.normal(size=v), rng.normal(size=v)
        cases += [(a, a, k), (a, b, k)]
    for i, (a, b, k) in enumerate(cases):
        got = student_fn(a, b, k)
        compare(
            np.asarray(got, np.float64).reshape(()),
            top_k_mean_reference(a, b, k),
            f"top_k_mean_r, case {i + 1} (V={a.size}, k={k}, "
            f"{'same' if a is b else 'different'} r for selection and report)",
            hint="Rank the voxels by select_r, highest first (np.argsort sorts ascending), keep "
            "the first k positions, and average report_r (not select_r) over them.",
        )
    return _passed("top_k_mean_r", len(cases))


# --------------------------------------------------------------------------- chapter 9
def check_first_size_ahead(student_fn) -> None:
    """Exercise: ``first_size_ahead(sizes, r_a, r_b) -> int | None``: the smallest training-set size
    from which model A's accuracy is above B's at that size and at every larger one; None when A is
    not ahead at the largest size.

    Cases: one crossing, A ahead everywhere, never ahead, crossing back and forth, a tie.
    """
    sizes = [100, 200, 400, 800, 1600]
    b = [0.30, 0.32, 0.34, 0.35, 0.36]
    cases = [
        [0.20, 0.28, 0.35, 0.40, 0.45],  # crosses between 200 and 400
        [0.40, 0.42, 0.44, 0.46, 0.48],  # ahead everywhere
        [0.10, 0.12, 0.14, 0.16, 0.18],  # never ahead
        [0.35, 0.30, 0.36, 0.34, 0.40],  # back and forth: only the last crossing counts
        [0.20, 0.28, 0.34, 0.40, 0.45],  # a tie at 400 is not ahead
    ]
    hint = (
        "Walk from the largest size down while A is strictly ahead; the last size you pass is the "
        "answer (None if A is not ahead at the largest size)."
    )
    for k, a in enumerate(cases):
        got, expected = student_fn(sizes, a, b), first_size_ahead_reference(sizes, a, b)
        if got != expected:
            raise ExerciseError(
                f"first_size_ahead, case {k + 1}: sizes {sizes}, r_a {a}, r_b {b}: "
                f"expected {expected}, got {got}. {hint}"
            )
    return _passed("first_size_ahead", len(cases))


EXERCISES = {
    "pearson_r": check_pearson_r,
    "noise_ceiling": check_noise_ceiling,
    "ridge_one_voxel": check_ridge_one_voxel,
    "layer_choice": check_layer_choice,
    "parameter_count": check_parameter_count,
    "voxel_pull": check_voxel_pull,
    "weighted_correlation_loss": check_weighted_correlation_loss,
    "add_prediction_noise": check_add_prediction_noise,
    "verdict": check_verdict,
    "compare_ablation": check_compare_ablation,
    "top_k_mean_r": check_top_k_mean_r,
    "first_size_ahead": check_first_size_ahead,
}
