"""Benchmark: generating the simulated visual cortex, its cache file, and its noise ceilings.

Generates one simulated subject without the cache (timing wall clock and CPU time), writes it to
a cache folder in a temporary directory (file size, load time), and prints per ROI the spread of the
noise ceiling estimated from the 13 test repeats, the exact (oracle) ceiling, and how far apart
the two are.

    python benchmarks/bench_simulate.py                  # default (vim-1-sized) subject
    python benchmarks/bench_simulate.py --profile quick  # the CI size
    python benchmarks/bench_simulate.py --threads 1      # torch on one thread (pure CPU work)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_simulate.py  # waiting threads sleep

Measured on generator 5 (default subject 1, seed 0, no cache): one NVIDIA H100 80GB HBM3 (lent GPU
machine, 16 CPU threads, 5 Dec 2026): generate + save 9.6 s wall, generation alone 6.1 s, the cache
file 73.6 MB, loaded in 1.0 s. The shared 2-core development machine, quiet (load 0.8): generate +
save 19.6 s wall, 33.1 s CPU (generation alone 17.3 s). (The table below is generator 4's.)

Measured (generator 4, default subject 1, seed 0, no cache; "generate + save" as printed):
- NVIDIA H200 (lent GPU machine), before the CPU work below: 4.7 s wall (``simulate(...,
  cache=False)``); 4.8-7.7 s per seed inside ``oracle_report``.
- The shared 2-core development machine, 5 Dec 2026, one run after the other (load average 1.6-1.7,
  the machine otherwise nearly idle; the files' values differ from the earlier code's by at most
  5e-6):

  ============================  =======================  =======================
  torch threads                 before (6ebf10b)         after
  ============================  =======================  =======================
  2 (torch's default)           33.7 s wall, 54.6 s CPU  18.5 s wall, 30.7 s CPU
  1 (``--threads 1``)           52.1 s wall, 49.7 s CPU  26.7 s wall, 26.5 s CPU
  ============================  =======================  =======================

  Where the time went (one thread, after): Gabor energy of V1 and of the texture maps 11 s (FFTs),
  the scenes 6.6 s, the measurement noise 1.6 s, the voxels' read-outs 1.3 s, V4/LO 2 s, writing
  the cache file 2 s. Under a load of 3-4 (other engineers' jobs), two threads took *longer* than
  one (65 s wall, 63 s CPU against 30 s and 29 s, nearly the same code): OpenMP's threads spin
  while they wait for each other. ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts) gives two
  threads the time of one there (30 s wall, 30 s CPU at load 3.5).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from etecrm_lib import evaluation
from etecrm_lib.device import describe_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=["quick", "full"])
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ETECRM_CACHE"] = tmp
        from etecrm_lib.data import simulate

        wall, cpu = time.perf_counter(), time.process_time()
        ds = simulate(
            args.subject, args.profile, seed=args.seed, cache=True
        )  # empty cache: generates, then saves
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        (path,) = Path(tmp, "sim").glob("*.npz")
        size_mb = path.stat().st_size / 1e6
        load = time.perf_counter()
        simulate(args.subject, args.profile, seed=args.seed, cache=True)
        load = time.perf_counter() - load

    print(
        f"device: {describe_device()}; torch threads: {torch.get_num_threads()}; "
        f"OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'not set')}; load average "
        f"(1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(
        ds.describe().splitlines()[1],
        "|",
        ds.describe().splitlines()[2].strip(),
        "|",
        ds.describe().splitlines()[3].strip(),
    )
    print(
        f"generate + save: {wall:.1f} s wall, {cpu:.1f} s CPU (generation alone: "
        f"{ds.info['generation_seconds']} s wall)"
    )
    print(f"cache file: {size_mb:.1f} MB, loaded in {load:.1f} s")
    print(
        f"{'ROI':4} {'voxels':>6} {'ineff.':>6} | {'ceiling (repeats)':>18} | "
        f"{'oracle ceiling':>15} | median |est - oracle|"
    )
    print(
        f"{'':4} {'':>6} {'':>6} | {'median':>8} {'90th %':>9} | {'median':>7} "
        f"{'90th %':>7} | {'all':>6} {'effective':>9}"
    )
    rows = {}
    for roi in ds.rois:
        estimated = evaluation.noise_ceiling(ds.test.repeats[roi])
        exact = evaluation.oracle_ceiling(ds.test.oracle[roi], ds.test.responses[roi])
        effective = ds.voxels[roi].extra["effective"]
        diff = np.abs(estimated - exact)
        rows[roi] = {
            "n_voxels": int(estimated.size),
            "ineffective_fraction": float(1 - effective.mean()),
            "ceiling_median": float(np.median(estimated)),
            "ceiling_p90": float(np.quantile(estimated, 0.9)),
            "oracle_median": float(np.median(exact)),
            "oracle_p90": float(np.quantile(exact, 0.9)),
            "abs_diff_median": float(np.median(diff)),
            "abs_diff_median_effective": float(np.median(diff[effective])),
        }
        r = rows[roi]
        print(
            f"{roi:4} {r['n_voxels']:6d} {r['ineffective_fraction']:6.2f} | "
            f"{r['ceiling_median']:8.2f} {r['ceiling_p90']:9.2f} | "
            f"{r['oracle_median']:7.2f} {r['oracle_p90']:7.2f} | "
            f"{r['abs_diff_median']:6.3f} {r['abs_diff_median_effective']:9.3f}"
        )
    print(
        json.dumps(
            {
                "profile": args.profile,
                "seed": args.seed,
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "threads": torch.get_num_threads(),
                "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                "cache_mb": round(size_mb, 1),
                "load_s": round(load, 2),
                "rois": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
