"""How long does `etecrm reproduce` take for one subject? (all models and ablations, every ROI,
every seed)

Runs :func:`etecrm_lib.reproduce.reproduce` into a fresh folder (so nothing is skipped) and prints
the wall time of loading the data, of every model summed over ROIs and seeds, and of the whole run
(ensembles, bootstrap comparisons and tables included), with the device name. Targets: the full
profile of one simulated subject with 5 seeds in at most 4 minutes on one H200; the quick profile
with 3 seeds in at most 3 minutes on 2 CPU cores.

    python benchmarks/bench_reproduce.py --profile quick --seeds 3 --device cpu   # 2 CPU cores
    python benchmarks/bench_reproduce.py --profile full --seeds 5 --device cuda   # one GPU

Not run by the tests. ``--json FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etecrm_lib.data import open_dataset  # noqa: E402
from etecrm_lib.device import describe_device, get_device  # noqa: E402
from etecrm_lib.reproduce import reproduce  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sim")
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--seeds", type=int, help="model seeds (default 5 on full, 3 on quick)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--simulation-seed",
        "--data-seed",
        dest="data_seed",
        type=int,
        default=0,
        help="the simulation's seed",
    )
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--device")
    parser.add_argument("--out", help="results folder (default: a fresh temporary folder)")
    parser.add_argument("--json", help="write the measurements to this file")
    args = parser.parse_args(argv)

    device = get_device(args.device)
    start = time.perf_counter()
    data = open_dataset(
        args.dataset, args.subject, args.profile, args.data_seed if args.dataset == "sim" else None
    )
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        start = time.perf_counter()
        results = reproduce(
            data,
            subject=args.subject,
            profile=args.profile,
            n_seeds=args.seeds,
            first_seed=args.first_seed,
            models=args.models,
            out=out,
            device=device,
            figures=False,
            progress=False,
            log=lambda *a: None,
        )
        total_s = time.perf_counter() - start
    per_model = {}
    for res in results:
        per_model[res.model] = per_model.get(res.model, 0.0) + float(res.info["wall_time_s"])
    report = {
        "dataset": args.dataset,
        "subject": args.subject,
        "profile": args.profile,
        "device": describe_device(device),
        "seeds": sorted({r.info["seed"] for r in results}),
        "data_seed": args.data_seed,
        "n_rois": len({r.roi for r in results}),
        "voxels": {r.roi: r.n_voxels for r in results},
        "n_train_images": data.train.n_images,
        "image_size": data.image_size,
        "load_s": round(load_s, 1),
        "models_s": {k: round(v, 1) for k, v in per_model.items()},
        "reproduce_s": round(total_s, 1),
    }
    print(
        f"{args.dataset} subject {args.subject}, profile {args.profile}, {report['device']}: "
        f"{data.train.n_images} train images of {data.image_size}px, voxels {report['voxels']}"
    )
    print(f"  loading the data: {load_s:.1f} s")
    for model, seconds in per_model.items():
        print(f"  {model:<18} {seconds:7.1f} s  (all ROIs and seeds)")
    print(
        f"  reproduce total: {total_s:.1f} s (models + ensembles + bootstrap + tables), "
        f"seeds {report['seeds']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
