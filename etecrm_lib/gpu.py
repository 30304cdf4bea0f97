"""Speed for the trainer, kept beside it: the same maths as the plain loop, launched faster on a
GPU.

``training.fit_etecrm`` reads as the plain PyTorch loop a student expects. On a GPU it asks this
module for four things, each of which changes *how fast*, never *what*, it computes:

- :func:`autocast`: bf16 or float16 matrix products, as :func:`resolve_precision` chooses for the
  card (a no-op on the CPU, which runs float32); :func:`grad_scaler` scales float16's loss;
- :func:`prepare_network`: the channels-last memory layout for the convolutions;
- :func:`make_optimizer`: Adam with the fused kernel on a GPU (one launch for all parameters);
- :func:`data_device`: keep the training images on the GPU when they fit;
- :func:`cuda_graph_step`: record one training step (batch gather, forward, loss, backward, Adam) as
  a CUDA graph and replay it. A network this small is limited by launching its ~60 kernels per
  step, not by arithmetic; one replay launches them all at once.

:func:`largest_batch_that_fits` halves the batch on a GPU that runs out of memory, and
:func:`run_concurrently` trains several models side by side, one CUDA stream each.
"""

from __future__ import annotations

import threading
import time
import warnings

import torch

RNG_LOCK = threading.Lock()
"""Held while seeding or drawing from torch's global random generator, so that models built in
threads side by side (:func:`run_concurrently`) each get the numbers of their own seed."""

CAPTURE_LOCK = threading.Lock()
"""Held while one thread records its CUDA graph (:func:`cuda_graph_step`). Entering a capture
synchronizes the whole device and empties the allocator's cache, which breaks a capture that another
thread of the same process has under way (``cudaErrorStreamCaptureInvalidated``). Measured on an
H200, 10 models trained 5 side by side, 2 epochs, 3 rounds: 4 of 30 recordings failed without this
lock, 0 of 30 with it (and 0 of 60 with two such processes at once)."""


PRECISIONS = ("auto", "bf16", "fp16", "fp32")
"""The settings of ``ETECRMConfig.precision``; "auto": :func:`resolve_precision` picks per card."""

BF16_CAPABILITY = 8.0
"""bfloat16 in hardware (and cuDNN's bf16 convolutions) start with Ampere, compute capability 8.0.
``torch.cuda.is_bf16_supported()`` answers True on older cards too (emulated): it is not asked."""

FP16_CAPABILITY = 7.0
"""float16 tensor cores start with Volta, capability 7.0 (V100 7.0, T4 7.5); older cards (P100 6.0,
P4 6.1) gain little or nothing from float16, so "auto" keeps float32 there.

Why "fp16" on a T4: its float16 tensor cores peak at 65 TFLOPS against 8.1 for float32 (NVIDIA's T4
datasheet), and a full-profile epoch is about 2 TFLOP. Not measured on a T4 (none is lent here). On
an H100 (``benchmarks/precision_h100.json``) one full-profile epoch took 0.062 s in bf16, 0.076 s
in fp32 and 0.089 s in fp16, whose loss scaling runs without a CUDA graph (launch-bound there)."""


def resolve_precision(setting: str, capability) -> str:
    """The precision one training run uses: "bf16", "fp16" or "fp32".

    setting : "auto", "bf16", "fp16" or "fp32" (``ETECRMConfig.precision``)
    capability : the GPU's compute capability, ``(major, minor)`` as
        ``torch.cuda.get_device_capability`` gives it or a number like 7.5; None for the CPU.

    The CPU always runs "fp32". "auto" is "bf16" from capability 8.0 (A100, L4, H100: float32's
    range, so nothing overflows), "fp16" from 7.0 (T4, V100: float16 tensor cores, with loss
    scaling, :func:`grad_scaler`, and the regression layer kept in float32 so that no prediction can
    overflow float16's largest number, 65504), "fp32" below. Forcing "bf16" on a card below 8.0 is
    refused (cuDNN has no bf16 convolutions there).
    """
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {setting!r}")
    if capability is None:
        return "fp32"
    if isinstance(capability, tuple):
        capability = capability[0] + capability[1] / 10
    if setting == "bf16" and capability < BF16_CAPABILITY:
        raise ValueError(
            f"precision 'bf16' needs a GPU of compute capability >= {BF16_CAPABILITY} "
            f"(this one has {capability}); use 'auto' (float16 with loss scaling here), 'fp16' "
            "or 'fp32'"
        )
    if setting != "auto":
        return setting
    if capability >= BF16_CAPABILITY:
        return "bf16"
    return "fp16" if capability >= FP16_CAPABILITY else "fp32"


def precision_for(setting: str, device: torch.device) -> str:
    """:func:`resolve_precision` for ``device`` (capability asked from CUDA; None on the CPU)."""
    device = torch.device(device)
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return resolve_precision(setting, capability)


def precision_and_scaler(setting: str, device: torch.device) -> tuple:
    """``(precision, scaler)`` for one training run on ``device``: :func:`precision_for` and its
    :func:`grad_scaler`."""
    precision = precision_for(setting, device)
    return precision, grad_scaler(precision, torch.device(device))


def autocast(device: torch.device, precision: str):
    """Autocast to ``precision`` ("bf16" or "fp16"; "fp32" = off) on a GPU; a no-op on the CPU.

    ``precision`` is a resolved one (:func:`precision_for`). Its cache of low-precision weight
    copies is off: it is of no use for one forward pass per step, and CUDA graphs cannot record it.
    """
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    return torch.autocast(
        device_type=device.type,
        dtype=dtype or torch.bfloat16,
        enabled=dtype is not None and device.type == "cuda",
        cache_enabled=False,
    )


def grad_scaler(precision: str, device: torch.device):
    """A ``torch.amp.GradScaler``, on for "fp16" on a GPU only: it multiplies the loss before the
    backward pass so that small gradients do not underflow float16, and skips a step whose gradients
    overflowed (then halves the scale). Off, its calls pass the loss and the step through unchanged.
    """
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")


def make_optimizer(
    params,
    learning_rate: float,
    weight_decay: float,
    device: torch.device,
    capturable: bool = False,
):
    """Adam (L2 weight decay, as ``torch.optim.Adam`` defines it) over ``params``; fused on a
    GPU."""
    params = list(params)
    if device.type == "cuda":
        return torch.optim.Adam(
            params, lr=learning_rate, weight_decay=weight_decay, fused=True, capturable=capturable
        )
    return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)


def prepare_network(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move the network to ``device``; on a GPU in the channels-last layout, which cuDNN's bf16 and
    float16 convolutions run fastest in (the same numbers, only their order in memory changes).
    """
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net


def data_device(nbytes: int, device: torch.device) -> torch.device:
    """Where the training images should live: ``device`` if they take at most half its free memory,
    else the CPU."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes < free // 2 else torch.device("cpu")


def seconds_since(started: float, device: torch.device) -> float:
    """Wall time since ``started`` (``time.perf_counter()``), once the GPU has finished what this
    thread's stream queued (other streams, e.g. of :func:`run_concurrently`, keep running)."""
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
    return time.perf_counter() - started


def run_concurrently(jobs: list, n_streams: int, device: torch.device) -> list:
    """Run the functions ``jobs`` (no arguments each) in ``n_streams`` threads, each thread on its
    own CUDA stream, and return their results in order. Small models leave most of a large GPU idle;
    several of them trained side by side keep it busy. On the CPU (or with ``n_streams`` <= 1) the
    jobs run one after another. Each job must use its own generators (``training.fit_etecrm``
    does)."""
    from concurrent.futures import ThreadPoolExecutor

    if device.type != "cuda" or n_streams <= 1:
        return [job() for job in jobs]

    def on_own_stream(job):
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            result = job()
        stream.synchronize()
        return result

    with ThreadPoolExecutor(max_workers=n_streams) as pool:
        return list(pool.map(on_own_stream, jobs))


def cuda_graph_step(step, example_inputs: tuple, params: list, optimizer):
    """Record ``step(*inputs)`` once as a CUDA graph; return a function with the same signature that
    replays it.

    ``step`` must zero the gradients itself (``optimizer.zero_grad(set_to_none=True)``),
    backpropagate, update and return tensors. The returned function copies its inputs into the
    recorded input buffers, replays, and returns the recorded output tensors, which the next call
    overwrites (copy what you keep). Recording needs a few warm-up steps; they change the weights
    and the optimizer state, so both are put back afterwards: training starts where it stood.
    Threads record one at a time (:data:`CAPTURE_LOCK`); replays run side by side. If recording
    fails, a warning says so and ``step`` itself is returned.
    """
    device = example_inputs[0].device
    static_inputs = tuple(x.clone() for x in example_inputs)
    saved_params = [p.detach().clone() for p in params]
    saved_state = {
        p: {k: v.clone() for k, v in st.items() if torch.is_tensor(v)}
        for p, st in optimizer.state.items()
    }
    with CAPTURE_LOCK:  # one recording at a time in this process (see CAPTURE_LOCK)
        try:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    step(*static_inputs)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # its own capture stream and thread-local capture: other threads (run_concurrently) may
            # keep launching
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                static_outputs = step(*static_inputs)
        except RuntimeError as err:
            warnings.warn(
                f"could not record the training step as a CUDA graph ({err}); training without one",
                stacklevel=2,
            )
            graph = None
        finally:
            with torch.no_grad():
                for p, saved in zip(params, saved_params):
                    p.copy_(saved)
                for (
                    p,
                    state,
                ) in optimizer.state.items():  # as before the warm-up (a fresh optimizer: zeros)
                    for key, value in state.items():
                        if torch.is_tensor(value):
                            value.copy_(saved_state[p][key]) if p in saved_state else value.zero_()
    if graph is None:
        return step

    def replay(*inputs):
        for buffer, value in zip(static_inputs, inputs):
            buffer.copy_(value)
        graph.replay()
        return static_outputs

    return replay


def largest_batch_that_fits(try_step, batch_size: int, device: torch.device) -> int:
    """On a GPU, run ``try_step(batch_size)`` (a forward and backward pass); on running out of
    memory, halve the batch size (with a warning) until it fits. On the CPU, ``batch_size`` as
    is."""
    if device.type != "cuda":
        return batch_size
    while True:
        try:
            try_step(batch_size)
            return batch_size
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch_size <= 4:
                raise
            warnings.warn(
                f"GPU out of memory with batches of {batch_size} images; trying {batch_size // 2}",
                stacklevel=2,
            )
            batch_size //= 2
