"""How fast the batched trainer (``batched.fit_group``) trains ETECRM, and are its models the same.

Usage (GPU; the figures go into closing notes and data/results/README.md, not into tests)::

    python3 benchmarks/bench_batched.py --profile full --seeds 5 --all
    python3 benchmarks/bench_batched.py --profile quick --seeds 2 --device cpu --check

Steps (each its own option; ``--all`` runs them all, in this order):

- ``--check``: 3 models (V1, full size, 2 epochs) trained in one group and one by one by
  ``training.fit_etecrm``; prints ``||group - alone|| / ||alone||`` of the weights and the
  chosen epochs.
- ``--modes``: 3 epochs of the whole group for several ways of computing it (grouped convolutions
  in the channels-last or NCHW layout, one convolution per model in a loop, ``torch.func.vmap``,
  without the CUDA graph); prints the seconds per epoch of the group, the median of the last two.
- ``--baseline E``: the old way (``fit_etecrm`` per model, ``--concurrent`` CUDA streams side by
  side) and the batched trainer, both for E epochs, on the same card.
- ``--run``: the whole work, ROIs x seeds x the profile's epochs, in one group; wall time, seconds
  per model-epoch, the arithmetic floor (forward + backward = 3 x ``models.count_flops`` per
  training image and epoch) and the TFLOP/s reached, peak GPU memory against
  ``batched.estimate_memory``; then median r per ROI (mean and s.d. over seeds) on the test split.
- ``--profile-kernels``: the GPU kernels that take the time, two epochs of the group
  (torch.profiler).

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
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etecrm_lib import batched, gpu  # noqa: E402
from etecrm_lib.batched import Member, estimate_memory, fit_group  # noqa: E402
from etecrm_lib.data import simulate  # noqa: E402
from etecrm_lib.device import describe_device, get_device  # noqa: E402
from etecrm_lib.models import ETECRMNet, count_flops  # noqa: E402
from etecrm_lib.training import ETECRMConfig, fit_etecrm, train_etecrm  # noqa: E402


def show(row: dict) -> None:
    print(json.dumps(row), flush=True)


def synced(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def loop_conv(x, weight, bias):
    """One convolution per model (the same numbers as the grouped one, M launches)."""
    m, c_in = weight.shape[0], weight.shape[2]
    return torch.cat(
        [
            F.conv2d(x[:, i * c_in : (i + 1) * c_in], weight[i], bias[i], stride=2, padding=1)
            for i in range(m)
        ],
        dim=1,
    )


def vmap_conv(x, weight, bias):
    """``torch.func.vmap`` of one model's convolution over the models (its batching rule)."""
    m, c_in = weight.shape[0], weight.shape[2]
    one = lambda xi, wi, bi: F.conv2d(xi, wi, bi, stride=2, padding=1)  # noqa: E731
    out = torch.func.vmap(one, in_dims=(1, 0, 0), out_dims=1)(
        x.unflatten(1, (m, c_in)), weight, bias
    )
    return out.flatten(1, 2)


def unfold_conv(x, weight, bias):
    """Each model's convolution as a matrix product over its image patches (im2col), all models
    in one batched product (not measured yet: a candidate where cuDNN loops over groups)."""
    b, m, c_out, c_in = x.shape[0], weight.shape[0], weight.shape[1], weight.shape[2]
    side = x.shape[-1] // 2
    cols = F.unfold(x, 3, padding=1, stride=2).view(b, m, c_in * 9, side * side)
    cols = cols.permute(1, 0, 3, 2).reshape(m, b * side * side, c_in * 9)
    out = torch.bmm(cols, weight.reshape(m, c_out, c_in * 9).transpose(1, 2)) + bias[:, None]
    return (
        out.view(m, b, side, side, c_out).permute(1, 0, 4, 2, 3).reshape(b, m * c_out, side, side)
    )


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


def modes(ds, rois, seeds, config, device, slow: bool = False) -> None:
    """Seconds per epoch of the whole group, several ways of computing it."""
    conv, layout, fused = batched.stacked_conv, batched.CHANNELS_LAST, batched.FUSED_SQUARE
    ways = {
        "grouped, channels-last, graph, fused square": (conv, True, True, True),
        "grouped, channels-last, graph, square then cast": (conv, True, True, False),
        "grouped, NCHW, graph, fused square": (conv, False, True, True),
        "vmap, channels-last, graph, fused square": (vmap_conv, True, True, True),
        "unfold + bmm, NCHW, graph, fused square": (unfold_conv, False, True, True),
    }
    if slow:
        ways["grouped, channels-last, no graph, fused square"] = (conv, True, False, True)
        ways["loop over models, channels-last, graph, fused square"] = (loop_conv, True, True, True)
    for name, (way, channels_last, graph, fuse) in ways.items():
        batched.stacked_conv, batched.CHANNELS_LAST, batched.FUSED_SQUARE = way, channels_last, fuse
        members = group_members(ds, rois, seeds, replace(config, epochs=3, cuda_graph=graph))
        try:
            models = fit_group(ds.train.stimuli, members, device, progress=False)
            epoch_s = np.median(models[0].history.epoch_seconds[1:]) * len(members)
            show(
                {
                    "mode": name,
                    "models": len(members),
                    "group_s_per_epoch": round(float(epoch_s), 4),
                }
            )
        except Exception as err:  # a mode that fails is reported, the others still run
            show({"mode": name, "error": repr(err)[:300]})
        finally:
            batched.stacked_conv, batched.CHANNELS_LAST, batched.FUSED_SQUARE = conv, layout, fused


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


def run(ds, rois, seeds, config, device) -> dict:
    """The whole work in one group: time, TFLOP/s, memory, accuracy."""
    members = group_members(ds, rois, seeds, config)
    bound = ceilings(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    started = synced(device)
    models = fit_group(ds.train.stimuli, members, device, progress=False)
    for model, roi in zip(models, [roi for roi in rois for _ in range(seeds)]):
        model.roi = roi
    wall = synced(device) - started
    n_fit = len(ds.train.stimuli) - int(round(len(ds.train.stimuli) * config.val_fraction))
    used = (n_fit // config.batch_size) * config.batch_size
    flop = sum(3 * count_flops(m.net) * used * config.epochs for m in models)
    estimate = estimate_memory(len(ds.train.stimuli), members)
    # Adam reads weight, gradient and 2 moments and writes 3 (28 bytes per float32 weight); the
    # read-out also reads its weight and writes its gradient (8 more): bytes no version avoids
    weights = sum(sum(p.numel() for p in m.net.parameters()) for m in models)
    steps = config.epochs * (n_fit // config.batch_size)
    summary = {
        "run": f"{len(rois)} ROIs x {seeds} seeds x {config.epochs} epochs, one group",
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


def profile_kernels(ds, rois, seeds, config, device) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    members = group_members(ds, rois, seeds, replace(config, epochs=2))
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fit_group(ds.train.stimuli, members, device, progress=False)
    print(
        prof.key_averages().table(
            sort_by="cuda_time_total", row_limit=22, max_name_column_width=60
        ),
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
    parser.add_argument("--slow-modes", action="store_true", help="also no graph, conv per model")
    parser.add_argument(
        "--baseline", type=int, default=0, help="epochs of the old-vs-new comparison"
    )
    parser.add_argument("--concurrent", type=int, default=5)
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--profile-kernels", action="store_true")
    args = parser.parse_args()
    if args.all:
        args.check = args.modes = args.run = args.profile_kernels = True
        args.baseline = args.baseline or 10

    device = get_device(args.device)
    started = time.perf_counter()
    ds = simulate(subject=args.subject, profile="default" if args.profile == "full" else "quick")
    show(
        {
            "simulate_s": round(time.perf_counter() - started, 1),
            "device": describe_device(device),
            "torch": torch.__version__,
        }
    )
    rois, config = args.rois or list(ds.rois), ETECRMConfig.for_profile(args.profile)
    ETECRMNet(1)  # first use of the module outside the timings
    if args.check:
        check(ds, config, device)
    if args.modes:
        modes(ds, rois, args.seeds, config, device, args.slow_modes)
    if args.baseline:
        baseline(ds, rois, args.seeds, config, args.baseline, args.concurrent, device)
    if args.run:
        run(ds, rois, args.seeds, config, device)
    if args.profile_kernels:
        profile_kernels(ds, rois, args.seeds, config, device)


if __name__ == "__main__":
    main()
