"""How fast does ETECRM train? One ROI model per epoch, and all five ROI models of a subject at once.

Run on a GPU machine (random inputs of the real sizes, so no data set is needed)::

    python benchmarks/bench_training.py                 # default sizes: 1750 images 128x128, batch 64
    python benchmarks/bench_training.py --quick         # tiny sizes, a CPU smoke run

What it measures (medians over epochs after the first, which holds start-up work):

1. ``fit_etecrm`` on one ROI (V1, 1294 voxels): seconds per epoch (fitting + validation).
2. ``fit_many`` on the five ROIs (V1 1294, V2 2083, V3 1790, V4 1535, LO 928 voxels, the voxel
   counts of vim-1 subject 1 in the Kay et al. OSF copy) for ``--epochs`` epochs, early stopping off:
   wall time, and seconds per epoch.
3. The batched training step alone, eagerly and replayed from a CUDA graph (a prototype: the whole
   step -- gather, forward, loss, backward, AdamW -- captured once), to see what launch overhead costs.

And the arithmetic floor: FLOPs of forward + backward (about 3x forward) over a measured bf16 matrix
product rate. Results go to a JSON file (``--out``) and a table on stdout. ``--steps`` also times the
bare training step in several forms (single / vmap x5 / loop x5; bf16 or float32; channels_last;
CUDA graph) and prints torch.profiler tables of the costliest kernels.

Measured on one NVIDIA H100 80GB HBM3 (torch 2.11, 2026-11-25; default config: 4 conv blocks
32-64-64-64, dense readout, bf16; 1575 fitting images = 24 steps of 64 per epoch):

| what | before (eager, foreach AdamW) | now (fused AdamW + CUDA graph) |
| --- | --- | --- |
| one ROI (V1), s/epoch | 0.114 | 0.025 (0.085 without the graph) |
| five ROIs batched, 200 epochs, wall s | 43.8 | 25.5 |
| five ROIs one after another, 200 epochs, s (5 x one-ROI epochs) | 114 | 25.1 |

The floor: 78.5 MFLOP per image forward for V1 (5 ROIs: 402 MFLOP), x3 for the backward, x 1536 images
per epoch = 1.9 TFLOP per 5-ROI epoch, 2.4 ms at the measured 788 TFLOP/s: 0.5 s for 200 epochs, 50x
under the measured 25 s. What limits it is not arithmetic: a step is ~100 small kernels (convolutions
on 64 images, bf16 NCHW<->NHWC conversions, reductions, AdamW), each far too small to fill the GPU.
Eagerly, the host could not launch them fast enough (one ROI: 5.2 ms per step of which 1.0 ms GPU
work; a CUDA graph brings it to 1.1 ms). Batched with vmap, the GPU work itself is slow: with
different inputs per model the first layer (1 input channel) became a depthwise convolution
(2.3 ms per step) and AdamW over the padded stacked parameters took 1.5 ms (now fused, and models
with one seed share the first layer's input). Next steps, not done: a larger batch of images per
step, channels_last end to end, torch.compile of the step to fuse the small element-wise kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etecrm_lib.batched import fit_many  # noqa: E402
from etecrm_lib.device import describe_device, get_device  # noqa: E402
from etecrm_lib.models import count_flops  # noqa: E402
from etecrm_lib.training import ETECRMConfig, fit_etecrm  # noqa: E402

ROI_VOXELS = {"V1": 1294, "V2": 2083, "V3": 1790, "V4": 1535, "LO": 928}


def random_data(n_images: int, size: int, seed: int = 0):
    """Smooth random images in [0, 1] and random z-scored responses (speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n_images, size, size)).astype(np.float32)
    responses = {roi: rng.standard_normal((n_images, v)).astype(np.float32) for roi, v in ROI_VOXELS.items()}
    return images, responses


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device) -> float:
    """Measured bf16 matrix-product rate (TFLOP/s) on this device (float32 on the CPU)."""
    n = 8192 if device.type == "cuda" else 512
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 2 * n ** 3 * 10 / (time.perf_counter() - t) / 1e12


def bench_single(images, responses, config, epochs, device):
    cfg = replace(config, epochs=epochs, patience=10 ** 6)
    model = fit_etecrm(images, responses["V1"], cfg, seed=0, device=device, progress=False)
    sec = model.history.epoch_seconds
    return {"epoch_seconds": sec, "median_epoch_s": statistics.median(sec[1:]) if len(sec) > 1 else sec[0],
            "batch_size": model.history.batch_size, "flops_per_image_fwd": count_flops(model.net)}


def bench_many(images, responses, config, epochs, device):
    cfg = replace(config, epochs=epochs, patience=10 ** 6)
    rois = list(ROI_VOXELS)
    sync(device)
    t = time.perf_counter()
    models = fit_many(images, [responses[r] for r in rois], [cfg] * len(rois), [0] * len(rois), device, progress=False)
    sync(device)
    wall = time.perf_counter() - t
    sec = models[0].history.epoch_seconds
    flops = sum(count_flops(m.net) for m in models)
    return {"wall_s": wall, "epochs": len(sec), "median_epoch_s": statistics.median(sec[1:]) if len(sec) > 1 else sec[0],
            "flops_per_image_fwd_all": flops}


def build_step(images, responses, config, device, mode: str = "vmap", amp: bool = True, channels_last: bool = False,
               use_graph: bool = False):
    """One training step of fresh models, as a closure ``run()`` (new random batches each call).

    mode: ``"single"`` (the V1 model alone), ``"vmap"`` (the five ROI models stacked, as ``fit_many``
    does) or ``"loop"`` (the five models one after another inside one step, no vmap).
    amp: bf16 autocast (else float32 with TF32 matrix units). use_graph: capture the whole step
    (gather, forward, loss, backward, AdamW) in one CUDA graph and replay it.
    """
    from torch.func import functional_call, vmap

    from etecrm_lib.batched import pad_voxels
    from etecrm_lib.losses import correlation_loss
    from etecrm_lib.models import ETECRMNet
    from etecrm_lib.training import prepare_images

    rois = ["V1"] if mode == "single" else list(ROI_VOXELS)
    k, b, s = len(rois), config.batch_size, config.image_size
    v_max = max(ROI_VOXELS[r] for r in rois)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x_all = prepare_images(images, s).to(device).contiguous(memory_format=fmt)
    targets = torch.stack([torch.nn.functional.pad(torch.as_tensor(responses[r]), (0, v_max - ROI_VOXELS[r]))
                           for r in rois]).to(device)
    nets = [config.build_network(ROI_VOXELS[r], i) for i, r in enumerate(rois)]
    idx = torch.randint(0, x_all.shape[0], (k, b), device=device)
    noise = torch.randn(k, b, 1, s, s, device=device) * config.noise_std
    n_features = nets[0].n_features
    mask = (torch.rand(k, b, n_features, device=device) > config.dropout).float() / (1 - config.dropout)
    weights = torch.ones(k, v_max, device=device)
    rows = torch.arange(k, device=device)[:, None]
    amp_ctx = lambda: torch.autocast(device.type, torch.bfloat16, enabled=amp and device.type == "cuda",  # noqa: E731
                                     cache_enabled=False)
    if mode == "vmap":
        states = [pad_voxels(n.state_dict(), v_max) for n in nets]
        params = {n: torch.stack([st[n] for st in states]).to(device).requires_grad_() for n in states[0]}
        with torch.device("meta"):
            template = ETECRMNet(v_max, s, config.channels, config.first_kernel, config.readout)
        all_params = list(params.values())

        def loss_fn():
            with amp_ctx():
                pred = vmap(lambda p, x, n, m: functional_call(template, p, (x, n, m)))(params, x_all[idx], noise, mask)
            return vmap(correlation_loss)(pred.float(), targets[rows, idx], weights).sum()
    else:
        nets = [n.to(device).to(memory_format=fmt) for n in nets]
        all_params = [p for n in nets for p in n.parameters()]

        def loss_fn():
            total = 0.0
            for j, net in enumerate(nets):
                v = ROI_VOXELS[rois[j]]
                with amp_ctx():
                    pred = net(x_all[idx[j]], noise[j], mask[j])
                total = total + correlation_loss(pred.float(), targets[j, idx[j], :v])
            return total
    opt = torch.optim.AdamW(all_params, lr=1e-3, weight_decay=1e-4, capturable=use_graph)

    def step():
        loss_fn().backward()
        opt.step()

    if use_graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            step()

        def run():
            idx.random_(0, x_all.shape[0])
            graph.replay()
    else:
        def run():
            idx.random_(0, x_all.shape[0])
            opt.zero_grad(set_to_none=True)
            step()
    return run


def time_step(run, device, n_steps: int = 20) -> float:
    """Median seconds per call of ``run`` (3 repeats of ``n_steps`` after 5 warm-up calls)."""
    for _ in range(5):
        run()
    sync(device)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n_steps):
            run()
        sync(device)
        times.append((time.perf_counter() - t) / n_steps)
    return statistics.median(times)


def profile_table(run, device, rows: int = 14) -> str:
    """The GPU kernels of 5 calls of ``run``, by total device time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        run()
    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            run()
        sync(device)
    averages = prof.key_averages()
    for key in ("self_cuda_time_total", "self_device_time_total"):
        try:
            return averages.table(sort_by=key, row_limit=rows, max_name_column_width=70)
        except Exception:  # noqa: BLE001 -- the key's name changed between torch versions
            continue
    return averages.table(row_limit=rows)


def step_variants(images, responses, config, device, report):
    """Time the training step in several forms; profile the default single and batched steps."""
    variants = [("single", dict(mode="single")), ("single fp32", dict(mode="single", amp=False)),
                ("single channels_last", dict(mode="single", channels_last=True)),
                ("single graph", dict(mode="single", use_graph=True)),
                ("vmap x5", dict(mode="vmap")), ("vmap x5 fp32", dict(mode="vmap", amp=False)),
                ("vmap x5 graph", dict(mode="vmap", use_graph=True)),
                ("loop x5", dict(mode="loop")), ("loop x5 channels_last", dict(mode="loop", channels_last=True)),
                ("loop x5 graph", dict(mode="loop", use_graph=True)),
                ("loop x5 channels_last graph", dict(mode="loop", channels_last=True, use_graph=True))]
    for name, kw in variants:
        if kw.get("use_graph") and device.type != "cuda":
            continue
        try:
            report.setdefault("steps", {})[name] = time_step(build_step(images, responses, config, device, **kw), device)
            print(f"step {name}: {report['steps'][name] * 1e3:.2f} ms", flush=True)
        except Exception as err:  # noqa: BLE001 -- a variant that fails is reported, not fatal
            report.setdefault("step_errors", {})[name] = repr(err)
            print(f"step {name} failed: {err!r}", flush=True)
    for name, kw in (("single", dict(mode="single")), ("vmap x5", dict(mode="vmap"))):
        print(f"\nprofile of the {name} step (5 steps):\n" + profile_table(build_step(images, responses, config, device, **kw), device),
              flush=True)


def compare_graph_eager(images, responses, config, device) -> dict:
    """Train the five ROI models for 3 epochs with and without the CUDA graph; how far apart are they?"""
    rois = list(ROI_VOXELS)
    out = {}
    for graph in (True, False):
        cfg = replace(config, epochs=3, patience=10 ** 6, cuda_graph=graph)
        models = fit_many(images, [responses[r] for r in rois], [cfg] * 5, [0] * 5, device, progress=False)
        single = fit_etecrm(images, responses["V1"], cfg, 0, device, progress=False)
        out[graph] = ([m.history.val_mean_r for m in models], models[0].predict(images[:100]), single.predict(images[:100]),
                      single.history.val_mean_r)
    (h_g, p_g, s_g, sh_g), (h_e, p_e, s_e, sh_e) = out[True], out[False]

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))
    return {"val_mean_r_graph": h_g, "val_mean_r_eager": h_e, "single_val_mean_r_graph": sh_g,
            "single_val_mean_r_eager": sh_e, "rel_diff_batched_pred": rel(p_g, p_e), "rel_diff_single_pred": rel(s_g, s_e),
            "rel_diff_batched_vs_single_pred_graph": rel(p_g, s_g)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke run)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs of the five-ROI batched run")
    parser.add_argument("--single-epochs", type=int, default=12, help="epochs of the one-ROI run")
    parser.add_argument("--max-many-seconds", type=float, default=150, help="extrapolate the five-ROI run beyond this")
    parser.add_argument("--steps", action="store_true", help="also time and profile the training step's variants")
    parser.add_argument("--skip-runs", action="store_true", help="only the step variants (no library training runs)")
    parser.add_argument("--out", default=os.environ.get("OUT", ".") + "/bench_training.json")
    args = parser.parse_args(argv)

    device = get_device()
    if args.quick:
        global ROI_VOXELS
        ROI_VOXELS = {roi: v // 20 for roi, v in ROI_VOXELS.items()}
        config, n_images = ETECRMConfig.for_profile("quick"), 200
    else:
        config, n_images = ETECRMConfig(), 1750
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    images, responses = random_data(n_images, config.image_size)
    report = {"device": describe_device(device), "torch": torch.__version__, "config": config.to_dict(),
              "n_images": n_images, "roi_voxels": ROI_VOXELS}
    report["matmul_tflops"] = matmul_tflops(device)
    print(f"device {report['device']}, torch {torch.__version__}, measured matmul {report['matmul_tflops']:.2f} TFLOP/s",
          flush=True)

    n_fit = int(round(n_images * (1 - config.val_fraction)))
    steps_per_epoch = n_fit // config.batch_size
    report["steps_per_epoch"] = steps_per_epoch
    # the arithmetic floor: forward + backward ~ 3 x forward FLOPs, at the measured matmul rate
    flops_5 = sum(count_flops(config.build_network(v)) for v in ROI_VOXELS.values())
    report["floor_epoch_s_5rois"] = 3 * flops_5 * steps_per_epoch * config.batch_size / (report["matmul_tflops"] * 1e12)

    if not args.skip_runs:
        report["single"] = bench_single(images, responses, config, args.single_epochs, device)
        print("single ROI:", json.dumps({k: v for k, v in report["single"].items() if k != "epoch_seconds"}), flush=True)
        if device.type == "cuda":
            eager = replace(config, cuda_graph=False)
            report["single_no_graph"] = bench_single(images, responses, eager, 6, device)
            print("single ROI without CUDA graph:", report["single_no_graph"]["median_epoch_s"], flush=True)
            report["many_no_graph"] = bench_many(images, responses, eager, 4, device)
            print("five ROIs without CUDA graph:", report["many_no_graph"]["median_epoch_s"], flush=True)
            report["graph_vs_eager"] = compare_graph_eager(images, responses, config, device)
            print("CUDA graph vs eager, 3 epochs:", json.dumps(report["graph_vs_eager"]), flush=True)
        probe = bench_many(images, responses, config, 4, device)
        predicted = probe["median_epoch_s"] * args.epochs
        if predicted <= args.max_many_seconds:
            report["many"] = bench_many(images, responses, config, args.epochs, device)
        else:
            report["many"] = dict(probe, extrapolated_wall_s=predicted)
        print("five ROIs:", json.dumps(report["many"]), flush=True)
    if args.steps:
        step_variants(images, responses, config, device, report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))

    print("\n| measure | value |\n| --- | --- |")
    print(f"| device | {report['device']} |")
    if not args.skip_runs:
        many = report["many"]
        extrapolated = "extrapolated_wall_s" in many
        wall = many["extrapolated_wall_s"] if extrapolated else many["wall_s"]
        print(f"| one ROI (V1), s/epoch (fit + validation) | {report['single']['median_epoch_s']:.4f} |")
        if "single_no_graph" in report:
            print(f"| one ROI (V1), s/epoch, without CUDA graph | {report['single_no_graph']['median_epoch_s']:.4f} |")
            print(f"| five ROIs batched, s/epoch, without CUDA graph | {report['many_no_graph']['median_epoch_s']:.4f} |")
        print(f"| five ROIs batched, s/epoch | {many['median_epoch_s']:.4f} |")
        print(f"| five ROIs batched, {args.epochs} epochs, wall s | {wall:.1f}{' (extrapolated)' if extrapolated else ''} |")
        print(f"| five ROIs one after another, {args.epochs} epochs, s (5 x one-ROI epochs) | "
              f"{5 * args.epochs * report['single']['median_epoch_s']:.1f} |")
    for name, seconds in report.get("steps", {}).items():
        print(f"| training step, {name}, ms (x {steps_per_epoch} steps/epoch) | {seconds * 1e3:.2f} |")
    print(f"| arithmetic floor, five ROIs, s/epoch | {report['floor_epoch_s_5rois']:.5f} |")


if __name__ == "__main__":
    main()
