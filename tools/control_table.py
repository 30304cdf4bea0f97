"""The control-cortex table: each model family on the cortex built from its own features.

For each control cortex (``simulate(..., ground_truth="gabor")`` and ``"cnn"``), fits ETECRM and the
Gabor ridge model on every ROI of one simulated subject (ETECRM with ``--seeds`` model seeds, the
ridge model is deterministic), and writes per ROI the median test r of both (ETECRM: mean over
seeds), the paired bootstrap difference (``gwp_ridge - etecrm``, 2000 resamples of the test images
and of the ETECRM seeds) and which family wins (the interval excludes 0). The Gabor model should
win on "gabor", ETECRM on "cnn".

    python tools/control_table.py --ground-truth gabor --profile full --out data/results/controls
    python tools/control_table.py --ground-truth cnn --profile full --out data/results/controls

Writes ``OUT/controls_<ground truth>_<profile>.json`` (atomically) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ground-truth", required=True, choices=["gabor", "cnn"])
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument(
        "--seeds", type=int, default=3, help="ETECRM model seeds 0..SEEDS-1 (default 3)"
    )
    parser.add_argument("--simulation-seed", type=int, default=0)
    parser.add_argument("--rois", nargs="+")
    parser.add_argument("--out", default="results/controls")
    args = parser.parse_args()

    from etecrm_lib import evaluation
    from etecrm_lib.ablations import run_variants
    from etecrm_lib.data import simulate
    from etecrm_lib.reproduce import provenance
    from etecrm_lib.results import jsonable
    from etecrm_lib.storage import atomic_write
    from etecrm_lib.tables import control_winner

    start = time.perf_counter()
    ds = simulate(
        args.subject,
        "quick" if args.profile == "quick" else "full",
        seed=args.simulation_seed,
        ground_truth=args.ground_truth,
    )
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    gwp_runs = run_variants(ds, ["gwp_ridge"], rois=args.rois, profile=args.profile, progress=False)
    etecrm_runs = [
        run_variants(
            ds, ["etecrm"], rois=args.rois, profile=args.profile, seed=seed, progress=False
        )
        for seed in range(args.seeds)
    ]  # [seed][roi]
    expected = "gwp_ridge" if args.ground_truth == "gabor" else "etecrm"
    rows = []
    for i, gwp in enumerate(gwp_runs):
        etecrm = [runs[i] for runs in etecrm_runs]
        comp = evaluation.paired_bootstrap(
            gwp, etecrm, ds.test.responses[gwp.roi], n_bootstrap=2000
        )
        winner = control_winner(comp.ci_low, comp.ci_high)
        etecrm_medians = [res.summary()["median_r"] for res in etecrm]
        rows.append(
            {
                "roi": gwp.roi,
                "etecrm_median_r": float(np.mean(etecrm_medians)),
                "etecrm_median_r_sd": float(np.std(etecrm_medians, ddof=1))
                if len(etecrm) > 1
                else None,
                "gwp_ridge_median_r": gwp.summary()["median_r"],
                "gwp_minus_etecrm": comp.difference,
                "ci_low": comp.ci_low,
                "ci_high": comp.ci_high,
                "winner": winner,
                "expected_winner": expected,
                "etecrm_wall_s": float(
                    np.mean([res.info.get("wall_time_s") or np.nan for res in etecrm])
                ),
                "device": etecrm[0].info.get("device"),
            }
        )
    summary = {
        "ground_truth": args.ground_truth,
        "profile": args.profile,
        "subject": args.subject,
        "model_seeds": list(range(args.seeds)),
        "simulation": {k: ds.info.get(k) for k in ("seed", "network_seed", "n_train")},
        "provenance": provenance(),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    path = Path(args.out) / f"controls_{args.ground_truth}_{args.profile}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(jsonable(summary), indent=1))
    print(
        f"control cortex '{args.ground_truth}', profile {args.profile} "
        f"({summary['wall_time_s']} s); expected winner: "
        f"{expected}"
    )
    print(
        f"| ROI | etecrm median r (mean of {args.seeds} seeds) | gwp_ridge median r | gwp "
        "- etecrm [95% CI] | winner |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['roi']} | {r['etecrm_median_r']:.3f} | {r['gwp_ridge_median_r']:.3f} | "
            f"{r['gwp_minus_etecrm']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | "
            f"{r['winner']} |"
        )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
