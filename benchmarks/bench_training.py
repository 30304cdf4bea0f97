"""How fast ETECRM (the released design) trains: the models of one subject, ROIs x seeds, one after another.

Usage (GPU; the figures go into closing notes and data/results/README.md, not into tests)::

    python3 benchmarks/bench_training.py --profile full --seeds 5              # 5 ROIs x 5 seeds x 50 epochs
    python3 benchmarks/bench_training.py --profile full --seeds 1 --no-graph   # the same loop without CUDA graphs
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

from etecrm_lib import ablations  # noqa: E402
from etecrm_lib.data import simulate  # noqa: E402
from etecrm_lib.device import describe_device, get_device  # noqa: E402
from etecrm_lib.models import count_flops  # noqa: E402
from etecrm_lib.training import ETECRMConfig, train_etecrm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["quick", "full"], default="full")
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--rois", nargs="+", default=None)
    parser.add_argument("--variants", nargs="+", default=["etecrm"])
    parser.add_argument("--no-graph", action="store_true")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = get_device(args.device)
    started = time.perf_counter()
    ds = simulate(subject=args.subject, profile="default" if args.profile == "full" else "quick", seed=args.data_seed)
    print(json.dumps({"simulate_s": round(time.perf_counter() - started, 1), "device": describe_device(device),
                      "torch": torch.__version__}), flush=True)
    rois = args.rois or list(ds.rois)
    rows, total_flop = [], 0.0
    started = time.perf_counter()
    for variant in args.variants:
        changes = dict(ablations.get_variant(variant).options, cuda_graph=not args.no_graph)
        if args.epochs:
            changes["epochs"] = args.epochs
        config = ETECRMConfig.for_profile(args.profile, **changes)
        for roi in rois:
            for seed in range(args.seeds):
                t = time.perf_counter()
                model = train_etecrm(ds, roi, config, seed=seed, device=device, progress=False)
                train_s = time.perf_counter() - t
                summary = model.score(ds, model=variant).summary()
                n_fit = model.history.batch_size * (int(len(ds.train.stimuli) * (1 - config.val_fraction))
                                                    // model.history.batch_size)
                flop = 3 * count_flops(model.net) * n_fit * config.epochs
                total_flop += flop
                row = {"variant": variant, "roi": roi, "seed": seed, "train_s": round(train_s, 2),
                       "s_per_epoch": round(float(np.median(model.history.epoch_seconds)), 4),
                       "best_epoch": model.history.best_epoch, "median_r": round(summary["median_r"], 4),
                       "top300_mean_r": round(summary["top300_mean_r"], 4), "tflops": round(flop / train_s / 1e12, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    wall = time.perf_counter() - started
    epochs = sum(ETECRMConfig.for_profile(args.profile).epochs if not args.epochs else args.epochs for _ in rows)
    print(json.dumps({"models": len(rows), "wall_s": round(wall, 1), "s_per_model_epoch": round(wall / epochs, 4),
                      "arithmetic_tflop": round(total_flop / 1e12, 1),
                      "achieved_tflops": round(total_flop / wall / 1e12, 1)}), flush=True)
    for variant in args.variants:
        for roi in rois:
            r = [row["median_r"] for row in rows if row["roi"] == roi and row["variant"] == variant]
            print(f"{variant:18s} {roi:3s} median r {np.mean(r):.3f} +- {np.std(r, ddof=1) if len(r) > 1 else 0:.3f} "
                  f"over {len(r)} seeds")


if __name__ == "__main__":
    main()
