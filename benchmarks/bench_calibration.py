"""Benchmark: the identifiability gate of the simulated cortex on several simulation seeds.

For each seed, runs :func:`etecrm_lib.data.calibration.oracle_report` on the default subject (it
simulates without the cache and fits the oracle read-out) and prints per ROI the target and the
measured share of voxels the oracle predicts significantly, the oracle's fraction of the true
ceiling, its median and best r, and the gate's verdict. With ``--write`` the tables go to
``data/calibration/oracle_report.json`` (the file chapter 1 reads and the tests check), with the
generator version, the device and the command.

    python benchmarks/bench_calibration.py --seeds 0 1 2 --write  # default profile
    python benchmarks/bench_calibration.py --profile quick --seeds 0

Measured: seeds 0-2 of the default subject, 4.5-4.9 s per seed (simulation and oracle) on an NVIDIA
H200; the quick profile on the shared 2-core machine, one seed: 112 s wall under heavy load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from etecrm_lib.data.calibration import (
    CALIBRATION_TARGETS,
    ORACLE_FILE,
    gate_failures,
    oracle_report,
)
from etecrm_lib.data.simulate import GENERATOR_VERSION
from etecrm_lib.device import describe_device
from etecrm_lib.storage import atomic_write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=["quick", "default", "full"])
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--write", action="store_true", help=f"write {ORACLE_FILE}")
    args = parser.parse_args()

    tables = {}
    for seed in args.seeds:
        start = time.perf_counter()
        tables[str(seed)] = table = oracle_report(args.subject, args.profile, seed)
        print(
            f"seed {seed}, subject {args.subject}, profile {args.profile}: "
            f"{time.perf_counter() - start:.1f} s on {describe_device()}"
        )
        print(
            f"{'ROI':4} {'target':>7} {'signif.':>8} {'of ceil.':>9} {'median r':>9} "
            f"{'best r':>7} {'ceiling':>8}"
        )
        for roi, row in table.items():
            target = CALIBRATION_TARGETS.get(roi, {}).get("oracle_frac_significant", float("nan"))
            print(
                f"{roi:4} {target:7.2f} {row['oracle_frac_significant']:8.3f} "
                f"{row['oracle_frac_of_ceiling']:9.3f} {row['oracle_median_r']:9.3f} "
                f"{row['oracle_best_r']:7.3f} {row['median_true_ceiling']:8.3f}"
            )
        print("gate:", "passes" if not gate_failures(table) else "; ".join(gate_failures(table)))
    if args.write:
        record = {
            "generator_version": GENERATOR_VERSION,
            "profile": args.profile,
            "subject": args.subject,
            "device": describe_device(),
            "command": "python " + " ".join(sys.argv),
            "targets": CALIBRATION_TARGETS,
            "tables": tables,
        }
        with atomic_write(ORACLE_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")
        print("wrote", ORACLE_FILE)


if __name__ == "__main__":
    main()
