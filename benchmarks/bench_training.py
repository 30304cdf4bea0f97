"""How fast ETECRM (the released design) trains: the models of one subject, ROIs x seeds, one after
another.

Usage (GPU; the figures go into closing notes and data/results/README.md, not into tests)::

    # 5 ROIs x 5 seeds x 50 epochs
    python3 benchmarks/bench_training.py --profile full --seeds 5
    # the same loop without CUDA graphs
    python3 benchmarks/bench_training.py --profile full --seeds 1 --no-graph
    # 5 models side by side
    python3 benchmarks/bench_training.py --profile full --seeds 5 --concurrent 5
    python3 benchmarks/bench_training.py --profile quick --seeds 3 --device cpu

It generates (or reads from the cache) the simulated subject, then trains every (ROI, seed) model
with ``training.train_etecrm`` and prints one JSON line per model and a summary: wall time of all
models, seconds per model-epoch, the arithmetic floor (forward + backward = 3 x the forward FLOPs
of ``models.count_flops``, per training image and epoch) and the TFLOP/s reached. ``--variants``
trains other variants of ``ablations`` too (seed 0 and up), for a first look at the ablations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etecrm_lib import ablations, gpu  # noqa: E402
from etecrm_lib.data import simulate  # noqa: E402
from etecrm_lib.device import describe_device, get_device  # noqa: E402
from etecrm_lib.models import count_flops  # noqa: E402
from etecrm_lib.training import ETECRMConfig, train_etecrm  # noqa: E402


def timed(job):
    """``job`` wrapped to return ``(its result, its wall seconds)``."""

    def run():
        t = time.perf_counter()
        result = job()
        return result, time.perf_counter() - t

    return run


def profile_kernels(ds, profile: str, device) -> None:
    """The GPU kernels that take the time: two epochs of the V1 model under torch.profiler."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    config = ETECRMConfig.for_profile(profile, epochs=2)
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        train_etecrm(ds, "V1", config, seed=0, device=device, progress=False)
    print(
        prof.key_averages().table(
            sort_by="cuda_time_total", row_limit=25, max_name_column_width=70
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["quick", "full"], default="full")
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--simulation-seed", "--data-seed", dest="data_seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--rois", nargs="+", default=None)
    parser.add_argument("--variants", nargs="+", default=["etecrm"])
    parser.add_argument("--no-graph", action="store_true")
    parser.add_argument(
        "--no-channels-last", action="store_true", help="convolutions in the NCHW layout"
    )
    parser.add_argument(
        "--concurrent",
        type=int,
        default=1,
        help="models trained side by side (one CUDA stream each)",
    )
    parser.add_argument(
        "--profile-kernels", action="store_true", help="print the top GPU kernels of 2 epochs of V1"
    )
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = get_device(args.device)
    started = time.perf_counter()
    ds = simulate(
        subject=args.subject,
        profile=args.profile,
        seed=args.data_seed,
    )
    print(
        json.dumps(
            {
                "simulate_s": round(time.perf_counter() - started, 1),
                "device": describe_device(device),
                "torch": torch.__version__,
            }
        ),
        flush=True,
    )
    rois = args.rois or list(ds.rois)
    if args.no_channels_last:
        gpu.prepare_network = lambda net, device: net.to(device)
    if args.profile_kernels:
        profile_kernels(ds, args.profile, device)
    jobs, specs = [], []
    for variant in args.variants:
        changes = dict(ablations.get_variant(variant).options, cuda_graph=not args.no_graph)
        if args.epochs:
            changes["epochs"] = args.epochs
        config = ETECRMConfig.for_profile(args.profile, **changes)
        for roi in rois:
            for seed in range(args.seeds):
                specs.append((variant, roi, seed, config))
                jobs.append(
                    timed(
                        lambda roi=roi, seed=seed, config=config: train_etecrm(
                            ds, roi, config, seed=seed, device=device, progress=False
                        )
                    )
                )
    started = time.perf_counter()
    trained = gpu.run_concurrently(jobs, args.concurrent, device)
    wall = time.perf_counter() - started
    rows, total_flop = [], 0.0
    for (variant, roi, seed, config), (model, train_s) in zip(specs, trained):
        model.name = variant
        summary = model.score(ds).summary()
        n_fit = model.history.batch_size * (
            int(len(ds.train.stimuli) * (1 - config.val_fraction)) // model.history.batch_size
        )
        flop = 3 * count_flops(model.net) * n_fit * config.epochs
        total_flop += flop
        row = {
            "variant": variant,
            "roi": roi,
            "seed": seed,
            "train_s": round(train_s, 2),
            "s_per_epoch": round(float(np.median(model.history.epoch_seconds)), 4),
            "best_epoch": model.history.best_epoch,
            "median_r": round(summary["median_r"], 4),
            "top300_mean_r": round(summary["top300_mean_r"], 4),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    epochs = sum(
        ETECRMConfig.for_profile(args.profile).epochs if not args.epochs else args.epochs
        for _ in rows
    )
    print(
        json.dumps(
            {
                "models": len(rows),
                "concurrent": args.concurrent,
                "graph": not args.no_graph,
                "channels_last": not args.no_channels_last,
                "wall_s": round(wall, 1),
                "s_per_model_epoch": round(wall / epochs, 4),
                "arithmetic_tflop": round(total_flop / 1e12, 1),
                "achieved_tflops": round(total_flop / wall / 1e12, 1),
            }
        ),
        flush=True,
    )
    for variant in args.variants:
        for roi in rois:
            r = [row["median_r"] for row in rows if row["roi"] == roi and row["variant"] == variant]
            print(
                f"{variant:18s} {roi:3s} median r {np.mean(r):.3f} +- "
                f"{np.std(r, ddof=1) if len(r) > 1 else 0:.3f} "
                f"over {len(r)} seeds"
            )


if __name__ == "__main__":
    main()
