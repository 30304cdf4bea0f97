"""How fast the batched trainer (``batched.fit_group``) trains ETECRM, and are its models the same.

Usage (GPU; the figures go into closing notes and data/results/README.md, not into tests)::

    python3 benchmarks/bench_batched.py --profile full --seeds 5 --all
    python3 benchmarks/bench_batched.py --profile quick --seeds 2 --device cpu --check
    # the ways to compute the convolutions, in under 150 s (from the repository root):
    PYTHONPATH=$PWD python3 benchmarks/bench_batched.py --profile full --seeds 5 --build --agree \
        --modes --mode-epochs 3 --cudnn-benchmark --conv fastest --profile-kernels \
        --deadline-s 110 --json $OUT/bench_batched_modes.json

Steps (each its own option; ``--all`` runs them all, in this order):

- ``--build``: seconds to draw 25 full networks' initial weights on the CPU, one after another
  and in threads (``stacked.build_networks``).
- ``--agree``: every way to compute the convolutions (``stacked.CONV_MODES``) in the training
  precision against the grouped convolution in float64 (predictions and gradients).
- ``--check``: 3 models (V1, full size, 2 epochs) trained in one group and one by one by
  ``training.fit_etecrm``; prints ``||group - alone|| / ||alone||`` of the weights and the
  chosen epochs.
- ``--modes``: ``--mode-epochs`` epochs of the whole group for each of ``stacked.CONV_MODES``;
  prints the seconds per epoch of the group (median of the epochs after the first), per
  model-epoch, TFLOP/s, set-up seconds and the extrapolated time of the profile's epochs;
  ``--cudnn-benchmark``: the fastest once more with ``torch.backends.cudnn.benchmark`` on.
- ``--baseline E``: the old way (``fit_etecrm`` per model, ``--concurrent`` CUDA streams side by
  side) and the batched trainer, both for E epochs, on the same card.
- ``--run``: the whole work, ROIs x seeds x the profile's epochs, in one group; wall time, seconds
  per model-epoch, the arithmetic floor (forward + backward = 3 x ``models.count_flops`` per
  training image and epoch) and the TFLOP/s reached, peak GPU memory against
  ``batched.estimate_memory``; then median r per ROI (mean and s.d. over seeds) on the test split.
- ``--profile-kernels``: the GPU kernels that take the time, two epochs of the group
  (torch.profiler), convolutions as ``--conv`` (``fastest``: the fastest of ``--modes``).

``--json PATH`` writes every row shown (rewritten after each row, so a run stopped half-way keeps
what it measured); ``--deadline-s S`` skips the steps that would start S seconds after the start.

Measured 2026-12-05 on one NVIDIA H100 80GB HBM3 (lent machine, torch 2.11.0+cu130, alone on the
GPU), ``--profile full --seeds 5 --modes --baseline 5 --run --profile-kernels`` and, in the call
before, ``--check``; the trainer of commit f74964b (before ``_unstack`` reused the networks):

- ceilings: copy 2.93 TB/s, bf16 matrix product 767 TFLOP/s.
- one epoch of the group of 25 (5 ROIs x 5 seeds): grouped convolutions, channels-last, CUDA
  graph, W*W squared into bf16: **1.09 s**; the same squaring then casting: 1.27 s; ``vmap``:
  1.64 s; NCHW: fails (cuDNN/ATen ``canUse32BitIndexMath``: 64 x 3200 channels x 64 x 64).
- old vs new, 5 epochs, 25 models: CUDA streams (``fit_etecrm`` x 25, 5 side by side) 8.4 s;
  batched 16.4 s, of which about 11 s set-up (25 networks built on the CPU, moved, handed back).
- the whole work, 25 models x 50 epochs: **67.4 s** (0.054 s per model-epoch; the issue's streams
  figure: 63.1 s), 2455 TFLOP of arithmetic: **36.4 TFLOP/s**; arithmetic floor 3.2 s, floor of
  the weights' traffic (36 bytes per weight per step, 499 M weights, 1200 steps) 7.4 s. Peak
  memory 20.3 GB. Median r per ROI (mean +- s.d. over the 5 seeds): V1 0.220 +- 0.005, V2 0.209
  +- 0.004, V3 0.185 +- 0.008, V4 0.037 +- 0.008, LO -0.008 +- 0.016 (the committed run, streams,
  H200: 0.217 +- 0.006, 0.207 +- 0.008, 0.189 +- 0.009, 0.032 +- 0.007, 0.003 +- 0.031).
- ``--check`` (bf16, 2 epochs, V1): same chosen epochs; read-out weights 1-2% apart (bf16 rounding
  of other kernels, amplified by training), validation median r 0.022 vs 0.021.
- kernel profile (2 epochs): the convolution kernel (cutlass implicit GEMM) 29% of GPU time in
  1275 launches, about one per model per step, and ``nhwcSliceCKernel`` 10% in 7700 launches:
  cuDNN runs a grouped convolution of 128-channel groups one group at a time, slicing each out,
  so stacking the models gains nothing in the convolutions; pageable host-to-device
  copies (network set-up) 13%; fused Adam 6%.

So on an H100 the batched trainer is not faster than CUDA streams; the 12 s target is not met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etecrm_lib import batched, gpu, stacked  # noqa: E402
from etecrm_lib.batched import Member, estimate_memory, fit_group  # noqa: E402
from etecrm_lib.data import simulate  # noqa: E402
from etecrm_lib.device import describe_device, get_device  # noqa: E402
from etecrm_lib.models import ETECRMNet, count_flops  # noqa: E402
from etecrm_lib.storage import atomic_write  # noqa: E402
from etecrm_lib.training import (  # noqa: E402
    ETECRMConfig,
    fit_etecrm,
    prepare_images,
    train_etecrm,
)

STARTED = time.perf_counter()
ROWS = []  # every row shown
JSON = {"path": None, "deadline_s": float("inf")}  # --json, --deadline-s


def show(row: dict) -> dict:
    """Print ``row`` as a JSON line and keep it (rewriting the ``--json`` file)."""
    print(json.dumps(row), flush=True)
    ROWS.append(row)
    if JSON["path"]:
        with atomic_write(JSON["path"]) as tmp:
            tmp.write_text(json.dumps(ROWS, indent=1))
    return row


def in_time(step: str) -> bool:
    """False (and a row that says so) once ``--deadline-s`` seconds have passed."""
    elapsed = time.perf_counter() - STARTED
    if elapsed > JSON["deadline_s"]:
        show({"skipped": step, "elapsed_s": round(elapsed, 1)})
        return False
    return True


def synced(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def check(ds, config, device) -> None:
    """3 models of V1 in one group and alone, on this device: how far apart their weights end."""
    config = replace(config, epochs=2)
    members = [Member(ds.train.responses["V1"], config, seed) for seed in range(2)]
    members.append(Member(ds.train.responses["V1"], replace(config, loss="mse", noise_std=0.0), 0))
    group = fit_group(ds.train.stimuli, members, device, progress=False)
    for member, g in zip(members, group):
        a = fit_etecrm(
            ds.train.stimuli, member.responses, member.config, member.seed, device, progress=False
        )
        state = a.net.state_dict()
        diff = {
            name: float((p - state[name]).float().norm() / state[name].float().norm())
            for name, p in g.net.state_dict().items()
        }
        show(
            {
                "check": f"{member.config.loss} seed {member.seed}",
                "max_rel_diff": max(diff.values()),
                "rel_diff_readout_weight": diff["weight"],
                "best_epoch_group": g.history.best_epoch,
                "best_epoch_alone": a.history.best_epoch,
                "val_median_r_group": round(float(np.median(g.val_r)), 4),
                "val_median_r_alone": round(float(np.median(a.val_r)), 4),
            }
        )


def group_members(ds, rois, seeds, config) -> list:
    return [Member(ds.train.responses[roi], config, seed) for roi in rois for seed in range(seeds)]


def flop_per_epoch(models, config, n_images: int) -> float:
    """Arithmetic of one epoch of ``models``: forward + backward = 3 x ``count_flops`` per
    training image used (the last incomplete batch dropped)."""
    n_fit = n_images - int(round(n_images * config.val_fraction))
    used = (n_fit // config.batch_size) * config.batch_size
    return sum(3 * count_flops(m.net) * used for m in models)


def modes(ds, rois, seeds, config, device, epochs: int, cudnn_benchmark: bool) -> list:
    """Each way to compute the convolutions (``stacked.CONV_MODES``): the whole group for
    ``epochs`` epochs (:func:`time_mode`). ``cudnn_benchmark``: then the fastest once more with
    ``torch.backends.cudnn.benchmark`` on (cuDNN times its algorithms instead of its heuristics
    choosing: other sums, so not the default; a lead for ``gpu.py``)."""
    members = group_members(ds, rois, seeds, replace(config, epochs=epochs))
    rows = [time_mode(ds, members, config, device, conv) for conv in stacked.CONV_MODES]
    timed = [r for r in rows if r and "error" not in r]
    if cudnn_benchmark and timed:
        fastest = min(timed, key=lambda r: r["group_s_per_epoch"])["mode"]
        torch.backends.cudnn.benchmark = True
        try:
            rows.append(time_mode(ds, members, config, device, fastest, cudnn_benchmark=True))
        finally:
            torch.backends.cudnn.benchmark = False
    return [r for r in rows if r]


def time_mode(ds, members, config, device, conv, cudnn_benchmark=False) -> dict | None:
    """Train ``members`` as one group, convolutions as ``conv``. The seconds of one group epoch are
    the median of the epochs after the first; set-up is the rest of the wall time (networks built,
    moved, stacked, the CUDA graph recorded, the first epoch's extra, the models handed back); the
    whole work (``config.epochs``) is extrapolated as set-up + epochs x one epoch's seconds. None
    past ``--deadline-s``."""
    if not in_time(f"mode {conv}"):
        return None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    try:
        started = synced(device)
        models = fit_group(ds.train.stimuli, members, device, progress=False, conv=conv)
        wall = synced(device) - started
    except Exception as err:  # a mode that fails is reported, the others still run
        return show({"mode": conv, "error": repr(err)[:300]})
    epochs, n_images = members[0].config.epochs, len(ds.train.stimuli)
    group_s = np.array(models[0].history.epoch_seconds) * len(members)  # per epoch
    epoch_s = float(np.median(group_s[1:] if len(group_s) > 1 else group_s))
    setup_s = wall - epoch_s * epochs
    estimate = estimate_memory(n_images, members, conv=conv)
    row = {
        "mode": conv,
        "cudnn_benchmark": cudnn_benchmark,
        "models": len(members),
        "epochs_timed": epochs,
        "group_s_per_epoch": round(epoch_s, 4),
        "s_per_model_epoch": round(epoch_s / len(members), 5),
        "tflops": round(flop_per_epoch(models, config, n_images) / epoch_s / 1e12, 2),
        "setup_s": round(setup_s, 2),
        f"extrapolated_s_{len(members)}x{config.epochs}": round(
            setup_s + config.epochs * epoch_s, 1
        ),
        "estimated_gb": round((estimate["shared"] + sum(estimate["per_model"])) / 1e9, 2),
    }
    if device.type == "cuda":
        row["peak_gb"] = round((torch.cuda.max_memory_allocated(device) - before) / 1e9, 2)
    return show(row)


def agree(ds, config, device) -> None:
    """Every way to compute the convolutions on this device, in the training precision, against the
    grouped convolution in float64: ``||got - ref|| / ||ref||`` of the predictions and of the
    gradients (3 networks of V1, 16 images each; channels-last on a GPU, as in training)."""
    y = ds.train.responses["V1"]
    nets = [config.build_network(y.shape[1], seed).to(device) for seed in range(3)]
    blocks = [stacked.Block(0, 3, y.shape[1], config.loss, config.mean_penalty, True)]
    images = prepare_images(ds.train.stimuli[:48], config.image_size).to(device)
    images = images.reshape(3, 16, config.image_size, config.image_size)
    precision = gpu.precision_for(config.precision, device)

    def pass_of(conv, dtype, autocast):
        net = stacked.StackedNet(nets, blocks, conv).to(device=device, dtype=dtype)
        net.channels_last = autocast and device.type == "cuda"  # the reference: plain layout
        with gpu.autocast(device, precision if autocast else "fp32"):
            (pred,) = net(images.to(dtype))
        grads = torch.autograd.grad(pred.float().square().mean(), list(net.parameters()))
        return [pred.detach().double()] + [g.double() for g in grads]

    try:
        reference = pass_of("grouped", torch.float64, False)
    except Exception as err:  # reported; the other steps still run
        show({"agree": "float64 reference", "error": repr(err)[:300]})
        return
    for conv in stacked.CONV_MODES:
        try:
            got = pass_of(conv, torch.float32, True)
        except Exception as err:  # reported; the other modes and steps still run
            show({"agree": conv, "error": repr(err)[:300]})
            continue
        errors = [float((g - r).norm() / r.norm()) for g, r in zip(got, reference)]
        show(
            {
                "agree": conv,
                "precision": precision,
                "pred_rel_err": round(errors[0], 6),
                "max_grad_rel_err": round(max(errors[1:]), 6),
                "finite": bool(all(torch.isfinite(g).all() for g in got)),
            }
        )


def build_time(ds, config) -> None:
    """Seconds to build 25 full networks' initial weights on the CPU: one after another
    (``ETECRMConfig.build_network``, 5 of them timed, times 5) and in threads
    (``stacked.build_networks``)."""
    v = ds.train.responses["V1"].shape[1]
    started = time.perf_counter()
    for seed in range(5):
        config.build_network(v, seed)
    serial = (time.perf_counter() - started) * 5
    started = time.perf_counter()
    stacked.build_networks([(config, v, seed) for seed in range(25)], torch.device("cpu"))
    threads = time.perf_counter() - started
    show(
        {
            "build_25_networks_serial_s": round(serial, 2),
            "build_25_networks_threads_s": round(threads, 2),
            "threads": min(stacked.BUILD_THREADS, os.cpu_count() or 1),
        }
    )


def baseline(ds, rois, seeds, config, epochs, concurrent, device) -> None:
    """The old way (fit_etecrm per model on CUDA streams) and the group, ``epochs`` epochs each."""
    config = replace(config, epochs=epochs)
    jobs = [
        lambda roi=roi, seed=seed: train_etecrm(
            ds, roi, config, seed=seed, device=device, progress=False
        )
        for roi in rois
        for seed in range(seeds)
    ]
    started = synced(device)
    gpu.run_concurrently(jobs, concurrent, device)
    old = synced(device) - started
    started = synced(device)
    fit_group(ds.train.stimuli, group_members(ds, rois, seeds, config), device, progress=False)
    new = synced(device) - started
    show(
        {
            "baseline_epochs": epochs,
            "models": len(jobs),
            "streams_s": round(old, 2),
            "batched_s": round(new, 2),
            "speed_up": round(old / new, 2),
        }
    )


def ceilings(device) -> dict:
    """The card's two measured ceilings: device-to-device copy bandwidth (bytes read + written) and
    bf16 matrix-product rate (8192^3), medians of 5 after a warm-up."""
    if device.type != "cuda":
        return {}
    a = torch.empty(2**28, device=device)  # 1 GiB
    b = torch.empty_like(a)
    x = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    copy, mm = [], []
    for i in range(6):
        started = synced(device)
        b.copy_(a)
        copy.append(synced(device) - started)
        started = synced(device)
        x @ x
        mm.append(synced(device) - started)
    out = {
        "copy_tb_s": round(2 * a.numel() * 4 / np.median(copy[1:]) / 1e12, 2),
        "bf16_matmul_tflops": round(2 * 8192**3 / np.median(mm[1:]) / 1e12, 0),
    }
    show(out)
    return out


def run(ds, rois, seeds, config, device, conv) -> dict:
    """The whole work in one group (convolutions computed as ``conv``): time, TFLOP/s, memory,
    accuracy."""
    members = group_members(ds, rois, seeds, config)
    bound = ceilings(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    started = synced(device)
    models = fit_group(ds.train.stimuli, members, device, progress=False, conv=conv)
    for model, roi in zip(models, [roi for roi in rois for _ in range(seeds)]):
        model.roi = roi
    wall = synced(device) - started
    n_fit = len(ds.train.stimuli) - int(round(len(ds.train.stimuli) * config.val_fraction))
    flop = flop_per_epoch(models, config, len(ds.train.stimuli)) * config.epochs
    estimate = estimate_memory(len(ds.train.stimuli), members, conv=conv)
    # Adam reads weight, gradient and 2 moments and writes 3 (28 bytes per float32 weight); the
    # read-out also reads its weight and writes its gradient (8 more): bytes no version avoids
    weights = sum(sum(p.numel() for p in m.net.parameters()) for m in models)
    steps = config.epochs * (n_fit // config.batch_size)
    summary = {
        "run": f"{len(rois)} ROIs x {seeds} seeds x {config.epochs} epochs, one group, {conv}",
        "models": len(models),
        "wall_s": round(wall, 2),
        "s_per_model_epoch": round(wall / (len(models) * config.epochs), 5),
        "arithmetic_tflop": round(flop / 1e12, 2),
        "achieved_tflops": round(flop / wall / 1e12, 1),
        "weights_m": round(weights / 1e6, 1),
        "weight_traffic_tb": round(36 * weights * steps / 1e12, 2),
        "arithmetic_floor_s": round(flop / 1e12 / bound["bf16_matmul_tflops"], 2)
        if bound
        else None,
        "weight_traffic_floor_s": round(36 * weights * steps / 1e12 / bound["copy_tb_s"], 2)
        if bound
        else None,
        "estimated_gb": round((estimate["shared"] + sum(estimate["per_model"])) / 1e9, 2),
    }
    if device.type == "cuda":
        summary["peak_gb"] = round((torch.cuda.max_memory_allocated(device) - before) / 1e9, 2)
    show(summary)
    for roi in rois:
        scores = [m.score(ds, keep_predictions=False).summary() for m in models if m.roi == roi]
        r = [s["median_r"] for s in scores]
        epochs = [m.history.best_epoch for m in models if m.roi == roi]
        show(
            {
                "roi": roi,
                "median_r_mean": round(float(np.mean(r)), 4),
                "median_r_sd": round(float(np.std(r, ddof=1)) if len(r) > 1 else 0.0, 4),
                "best_epochs": epochs,
            }
        )
    return summary


def profile_kernels(ds, rois, seeds, config, device, conv) -> None:
    """The kernels that take the time: two epochs of the group, convolutions as ``conv``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    members = group_members(ds, rois, seeds, replace(config, epochs=2))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with torch_profile(activities=activities) as prof:
            fit_group(ds.train.stimuli, members, device, progress=False, conv=conv)
    except Exception as err:  # reported; what was measured before is kept
        show({"profile_kernels": conv, "error": repr(err)[:300]})
        return
    averages, tables = prof.key_averages(), {}
    # the kernels by their own time first (the name of that column changed across versions), then
    # the operators by their total time
    if device.type == "cuda":
        choices = [
            ("self_device_time_total", "self_cuda_time_total"),
            ("device_time_total", "cuda_time_total"),
        ]
    else:
        choices = [("self_cpu_time_total",), ("cpu_time_total",)]
    for keys in choices:
        for key in keys:
            try:
                tables[key] = averages.table(sort_by=key, row_limit=20, max_name_column_width=55)
            except Exception:  # a column this version does not have
                continue
            print(f"sorted by {key}:", tables[key], sep="\n", flush=True)
            break
    ROWS.append({"profile_kernels": conv, "tables": tables})


def summary(timed: list, config) -> None:
    """One line per timed mode, fastest first."""
    for r in sorted(timed, key=lambda r: r["group_s_per_epoch"]):
        extrapolated = [v for k, v in r.items() if k.startswith("extrapolated")][0]
        name = r["mode"] + (" +bench" if r["cudnn_benchmark"] else "")
        print(
            f"{name:>18}: {r['s_per_model_epoch']:.4f} s per model-epoch, "
            f"{r['tflops']:6.1f} TFLOP/s, set-up {r['setup_s']:5.1f} s, "
            f"{r['models']} models x {config.epochs} epochs ~ {extrapolated} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["quick", "full"], default="full")
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rois", nargs="+", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--modes", action="store_true")
    parser.add_argument("--mode-epochs", type=int, default=3, help="epochs per mode (>= 2)")
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="--modes: the fastest again, benchmark on"
    )
    parser.add_argument("--agree", action="store_true")
    parser.add_argument("--build", action="store_true")
    parser.add_argument(
        "--conv",
        default=batched.CONV,
        choices=[*stacked.CONV_MODES, "fastest"],
        help="convolutions of --run and --profile-kernels; fastest: the fastest of --modes",
    )
    parser.add_argument(
        "--baseline", type=int, default=0, help="epochs of the old-vs-new comparison"
    )
    parser.add_argument("--concurrent", type=int, default=5)
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--profile-kernels", action="store_true")
    parser.add_argument("--json", default=None, help="write every row shown to this JSON file")
    parser.add_argument("--deadline-s", type=float, default=float("inf"))
    args = parser.parse_args()
    JSON["path"], JSON["deadline_s"] = args.json, args.deadline_s
    if args.all:
        args.check = args.modes = args.agree = args.build = True
        args.run = args.profile_kernels = True
        args.baseline = args.baseline or 10

    device = get_device(args.device)
    started = time.perf_counter()
    ds = simulate(subject=args.subject, profile="default" if args.profile == "full" else "quick")
    show(
        {
            "simulate_s": round(time.perf_counter() - started, 1),
            "device": describe_device(device),
            "torch": torch.__version__,
            "argv": sys.argv[1:],
        }
    )
    rois, config = args.rois or list(ds.rois), ETECRMConfig.for_profile(args.profile)
    ETECRMNet(1)  # first use of the module outside the timings
    try:
        if args.build:
            build_time(ds, config)
        if args.agree:
            agree(ds, config, device)
        if args.check:
            check(ds, config, device)
        conv = batched.CONV if args.conv == "fastest" else args.conv
        if args.modes:
            rows = modes(
                ds, rois, args.seeds, config, device, args.mode_epochs, args.cudnn_benchmark
            )
            timed = [r for r in rows if "error" not in r]
            plain = [r for r in timed if not r["cudnn_benchmark"]]
            if plain and args.conv == "fastest":
                conv = min(plain, key=lambda r: r["group_s_per_epoch"])["mode"]
            summary(timed, config)
        if args.baseline and in_time("baseline"):
            baseline(ds, rois, args.seeds, config, args.baseline, args.concurrent, device)
        if args.run and in_time("run"):
            run(ds, rois, args.seeds, config, device, conv)
        if args.profile_kernels and in_time("profile-kernels"):
            profile_kernels(ds, rois, args.seeds, config, device, conv)
    finally:
        if args.profile_kernels:  # the tables above are long: the figures once more, last
            for row in ROWS:
                if "agree" in row or "build_25_networks_serial_s" in row:
                    print(json.dumps(row), flush=True)
            summary([r for r in ROWS if "group_s_per_epoch" in r], config)
        show({"total_s": round(time.perf_counter() - STARTED, 1)})


if __name__ == "__main__":
    main()
