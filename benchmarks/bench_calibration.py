"""Benchmark: the identifiability (and learnability) gates of the simulated cortex on several seeds.

For each seed, simulates the default subject (without the cache), fits the oracle read-out
(:func:`etecrm_lib.data.calibration.oracle_table`) and prints per ROI the target and the measured
share of voxels the oracle predicts significantly, the oracle's fraction of the true ceiling, its
median and best r, and the gate's verdict. With ``--learnability`` it also reads the same simulated
dataset out with the generic learners (:func:`etecrm_lib.data.calibration.learnability_report`) and
prints per ROI and learner the median r, the share of voxels predicted significantly and the
learnability gate's verdict. With ``--write`` the oracle tables go to
``data/calibration/oracle_report.json`` (the file chapter 1 reads and the tests check), and with
``--learnability`` the learnability tables to ``data/calibration/learnability_report.json``, each
with the generator version, the device and the command.

    python benchmarks/bench_calibration.py --seeds 0 1 2 --write  # default profile
    python benchmarks/bench_calibration.py --seeds 0 1 2 --learnability --write
    python benchmarks/bench_calibration.py --profile quick --seeds 0 --learnability

Measured: seeds 0-2 of the default subject, 4.5-4.9 s per seed (simulation and oracle) on an NVIDIA
H200; the quick profile on the shared 2-core machine, one seed: 112 s wall under heavy load.
``--learnability``, default profile, seed 0, on the shared 2-core CPU: simulation and oracle 17-18
s, the two generic learners 36-37 s (56-57 s wall). Generator 4: V1-V3 pass the learnability gate
(best learner 20-23 % of the voxels significant), V4 and LO fail it (1 %); generator 5: every ROI
passes on seeds 0-2 (best learner, random features: V4 12 / 18 / 11 %, LO 13 / 11 / 13 %).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from etecrm_lib.data.calibration import (
    CALIBRATION_TARGETS,
    LEARNABILITY_FILE,
    LEARNABLE_FRAC_SIGNIFICANT,
    ORACLE_FILE,
    SimulationConfig,
    gate_failures,
    learnability_failures,
    learnability_report,
    oracle_table,
)
from etecrm_lib.data.simulate import GENERATOR_VERSION, generate_with_basis
from etecrm_lib.device import describe_device
from etecrm_lib.storage import atomic_write


def print_oracle(table: dict) -> None:
    """The oracle table of one seed, and the identifiability gate's verdict."""
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
    failures = gate_failures(table)
    print("identifiability gate:", "passes" if not failures else "; ".join(failures))


def print_learnability(table: dict) -> None:
    """The generic learners' table of one seed, and the learnability gate's verdict per ROI."""
    print(f"{'ROI':4} {'learner':8} {'median r':>9} {'signif.':>8} {'CV r':>7}  gate")
    for roi, row in table.items():
        for name, figures in row["learners"].items():
            verdict = ""
            if name == row["best_learner"]:  # the gate reads the learner chosen on training data
                passes = row["best_frac_significant"] >= LEARNABLE_FRAC_SIGNIFICANT
                verdict = "passes" if passes else "FAILS"
            print(
                f"{roi:4} {name:8} {figures['median_r']:9.3f} {figures['frac_significant']:8.3f} "
                f"{figures['cv_median_r']:7.3f}  {verdict}"
            )
    failures = learnability_failures(table)
    print("learnability gate:", "passes" if not failures else "; ".join(failures))


KEPT = ("previous_generator", "snr_fit")  # what the file says of earlier work: kept on rewrite


def write_record(path, args, tables: dict, **extra) -> None:
    """Write ``tables`` (by seed) with the header fields, atomically.

    The fields of :data:`KEPT` already in the file stay (``previous_generator``: the tables of the
    last generator that failed this gate, which chapter 1 shows; ``snr_fit``: how the SNRs were
    fitted).
    """
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    record = {
        "generator_version": GENERATOR_VERSION,
        "profile": args.profile,
        "subject": args.subject,
        "device": describe_device(),
        "command": "python " + " ".join(sys.argv),
        **extra,
        "tables": tables,
        **{key: old[key] for key in KEPT if key in old},
    }
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    print("wrote", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=["quick", "default", "full"])
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learnability", action="store_true", help="also run the generic learners")
    parser.add_argument("--write", action="store_true", help="write the tables (data/calibration)")
    args = parser.parse_args()

    config = SimulationConfig.for_profile(args.profile)
    oracle_tables, learnability_tables = {}, {}
    for seed in args.seeds:
        start = time.perf_counter()
        dataset, basis = generate_with_basis(config, args.subject, seed)
        oracle_tables[str(seed)] = oracle_table(dataset, basis)
        print(
            f"seed {seed}, subject {args.subject}, profile {args.profile}: simulation and oracle "
            f"{time.perf_counter() - start:.1f} s on {describe_device()}"
        )
        print_oracle(oracle_tables[str(seed)])
        if args.learnability:
            start = time.perf_counter()
            learnability_tables[str(seed)] = learnability_report(dataset=dataset)
            print(f"generic learners: {time.perf_counter() - start:.1f} s")
            print_learnability(learnability_tables[str(seed)])
    if args.write:
        write_record(ORACLE_FILE, args, oracle_tables, targets=CALIBRATION_TARGETS)
        if args.learnability:
            gate = {"learnable_frac_significant": LEARNABLE_FRAC_SIGNIFICANT, "p": 1e-3}
            write_record(LEARNABILITY_FILE, args, learnability_tables, gate=gate)


if __name__ == "__main__":
    main()
