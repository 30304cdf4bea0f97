"""Benchmark: the simulated cortex against its vim-1 calibration targets, on several simulation
seeds.

For each seed, generates the default subject (or loads it from the cache), then prints per ROI the
target and the measured median noise ceiling and fraction of predictable voxels (true and
estimated from the repeats)
(``simulate.calibration_summary``), and the test r of the best voxels of the two-step Gabor model
``gwp_ridge`` (maximum and 99th percentile; the target for V1 is about 0.8). A JSON line per seed
follows the table.

    python benchmarks/bench_calibration.py --seeds 0 1            # default profile (CPU: minutes)
    python benchmarks/bench_calibration.py --seeds 0 --no-model   # ceilings only
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=["quick", "default", "full"])
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--ground-truth", default="cortex", choices=["cortex", "gabor", "cnn"])
    parser.add_argument("--no-model", action="store_true", help="skip fitting gwp_ridge")
    args = parser.parse_args()

    from etecrm_lib.ablations import run_variants
    from etecrm_lib.data import simulate
    from etecrm_lib.data.calibration import BEST_V1_R
    from etecrm_lib.data.simulate import calibration_summary

    for seed in args.seeds:
        ds = simulate(args.subject, args.profile, seed=seed, ground_truth=args.ground_truth)
        rows = calibration_summary(ds)
        if not args.no_model:
            profile = "quick" if args.profile == "quick" else "full"
            for res in run_variants(ds, ["gwp_ridge"], profile=profile, progress=False):
                r = np.asarray(res.test_r, dtype=np.float64)
                rows[res.roi].update(
                    gwp_best_r=float(r.max()),
                    gwp_p99_r=float(np.quantile(r, 0.99)),
                    gwp_median_r=float(np.median(r)),
                )
        print(
            f"seed {seed}, subject {args.subject}, profile {args.profile}, ground truth "
            f"{args.ground_truth}, "
            f"network seed {ds.info['network_seed']}"
        )
        print(
            "true ceilings (from the noise-free signal) against the targets; in brackets: "
            "estimated from the repeats"
        )
        print(
            f"{'ROI':4} | {'median ceiling':>23} | {'predictable':>23} | gwp_ridge best r "
            "(99th pct.)"
        )
        print(
            f"{'':4} | {'target':>6} {'true':>6} {'(est.)':>8} | {'target':>6} {'true':>6} "
            f"{'(est.)':>8} |"
        )
        for roi, row in rows.items():
            best = (
                f"{row['gwp_best_r']:.2f} ({row['gwp_p99_r']:.2f})" if "gwp_best_r" in row else "-"
            )
            best += f"  target ~{BEST_V1_R}" if roi == "V1" and "gwp_best_r" in row else ""
            print(
                f"{roi:4} | {row['target_median_ceiling']:6.2f} {row['median_ceiling']:6.2f} "
                f"{'(%.2f)' % row['estimated_median_ceiling']:>8} | "
                f"{row['target_predictable_fraction']:6.2f} "
                f"{row['predictable_fraction']:6.2f} "
                f"{'(%.2f)' % row['estimated_predictable_fraction']:>8} | {best}"
            )
        print(
            json.dumps(
                {
                    "seed": seed,
                    "profile": args.profile,
                    "ground_truth": args.ground_truth,
                    "rois": rows,
                }
            )
        )


if __name__ == "__main__":
    main()
