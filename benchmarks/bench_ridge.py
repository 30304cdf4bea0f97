"""Benchmark: our voxel-wise ridge (etecrm_lib.regression) against himalaya, same data, folds and
alphas.

Default sizes are vim-1's: 1750 training images, 25,000 voxels, 20 alphas, 5 folds, and 10k / 50k
features (both larger than the number of images, so both libraries solve in the kernel (dual) form).
Both use float32 on the same device in the same process; each is warmed up on a small problem
first, then timed ``--repeat`` times (CUDA synchronised), keeping the fastest. Reported: seconds for
each, the ratio ours / himalaya, the fraction of voxels given the same alpha, and the agreement of
the predictions on new features.

    python benchmarks/bench_ridge.py                       # GPU sizes (a GPU with ~20 GB free)
    python benchmarks/bench_ridge.py --quick --device cpu  # small sizes, a laptop / CI machine

Needs himalaya (``pip install himalaya``); ``--no-himalaya`` times ours alone.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from etecrm_lib.device import describe_device, get_device
from etecrm_lib.regression import DEFAULT_ALPHAS, fit_ridge_cv


def make_data(n_samples, n_features, n_voxels, device, seed=0):
    """Features with a decaying spectrum and voxels driven by a few hundred of them plus noise."""
    gen = torch.Generator(device=device).manual_seed(seed)
    rank = min(200, n_features)
    latent = torch.randn(n_samples + 200, rank, generator=gen, device=device)
    mixing = torch.randn(rank, n_features, generator=gen, device=device) / rank**0.5
    x = latent @ mixing + 0.5 * torch.randn(
        n_samples + 200, n_features, generator=gen, device=device
    )
    w = torch.randn(rank, n_voxels, generator=gen, device=device) * torch.rand(
        n_voxels, generator=gen, device=device
    )
    y = latent[:n_samples] @ w + 3.0 * torch.randn(
        n_samples, n_voxels, generator=gen, device=device
    ) * w.std(0)
    return x[:n_samples].contiguous(), y.contiguous(), x[n_samples:].contiguous()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(x, y, alphas, n_folds, device):
    sync(device)
    start = time.perf_counter()
    fit = fit_ridge_cv(x, y, alphas, n_folds=n_folds, score="r", device=device)
    sync(device)
    return time.perf_counter() - start, fit


def time_himalaya(x, y, alphas, n_folds, device):
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.scoring import correlation_score

    set_backend("torch_cuda" if device.type == "cuda" else "torch", on_error="raise")
    model = KernelRidgeCV(
        alphas=np.asarray(alphas, dtype=np.float32),
        cv=n_folds,
        fit_intercept=True,
        solver_params=dict(score_func=correlation_score),
        warn=False,
    )
    sync(device)
    start = time.perf_counter()
    model.fit(x, y)
    sync(device)
    return time.perf_counter() - start, model


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: GPU if present)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: 300 images, 2000 voxels, 500/2728 features",
    )
    parser.add_argument("--n-samples", type=int, default=1750)
    parser.add_argument("--n-voxels", type=int, default=25000)
    parser.add_argument("--features", type=int, nargs="+", default=[10000, 50000])
    parser.add_argument("--n-alphas", type=int, default=20)
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument(
        "--repeat", type=int, default=3, help="time each fit this many times, keep the fastest"
    )
    parser.add_argument("--no-himalaya", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_samples, args.n_voxels, args.features = 300, 2000, [500, 2728]
    device = get_device(args.device)
    alphas = np.asarray(DEFAULT_ALPHAS, dtype=np.float32)
    if args.n_alphas != len(alphas):
        alphas = np.logspace(-1, 8.5, args.n_alphas).astype(np.float32)
    print(f"device: {describe_device(device)}; torch {torch.__version__}")
    print(
        f"{args.n_samples} samples, {args.n_voxels} voxels, {len(alphas)} alphas, "
        f"{args.n_folds} folds"
    )

    # warm-up (CUDA context, cuBLAS/cuSOLVER handles, kernels) on a small problem
    xw, yw, _ = make_data(200, 300, 100, device, seed=1)
    time_ours(xw, yw, alphas, args.n_folds, device)
    if not args.no_himalaya:
        time_himalaya(xw, yw, alphas, args.n_folds, device)

    rows = []
    for n_features in args.features:
        x, y, x_new = make_data(args.n_samples, n_features, args.n_voxels, device)
        t_ours, fit = min(
            (time_ours(x, y, alphas, args.n_folds, device) for _ in range(args.repeat)),
            key=lambda t: t[0],
        )
        row = {
            "device": describe_device(device),
            "n_samples": args.n_samples,
            "n_voxels": args.n_voxels,
            "n_features": n_features,
            "n_alphas": len(alphas),
            "n_folds": args.n_folds,
            "ours_s": round(t_ours, 3),
        }
        if not args.no_himalaya:
            t_him, model = min(
                (time_himalaya(x, y, alphas, args.n_folds, device) for _ in range(args.repeat)),
                key=lambda t: t[0],
            )
            best = torch.as_tensor(model.best_alphas_).to(device)
            check = slice(0, min(2000, args.n_voxels))
            p_ours = fit.predict(x_new)[:, check].double().cpu().numpy()
            p_him = (
                torch.as_tensor(model.predict(x_new)).to(device)[:, check].double().cpu().numpy()
            )
            r = [np.corrcoef(p_ours[:, j], p_him[:, j])[0, 1] for j in range(p_ours.shape[1])]
            row.update(
                {
                    "himalaya_s": round(t_him, 3),
                    "ratio": round(t_ours / t_him, 3),
                    "same_alpha": float(torch.isclose(best, fit.alphas, rtol=1e-3).float().mean()),
                    "prediction_r_min": float(np.nanmin(r)),
                    "prediction_r_median": float(np.nanmedian(r)),
                }
            )
            del model
        print(json.dumps(row))
        rows.append(row)
        del x, y, x_new, fit
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
