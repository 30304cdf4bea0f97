"""Many ETECRM models trained at once as one network: the seeds and variants of one ROI together.

``training.fit_etecrm`` trains one model; it is the loop chapter 4 teaches. One ETECRM network is
small: on a large GPU one model's step launches dozens of small kernels and leaves most of the chip
idle. :func:`fit_group` trains M models in one loop instead, as one *stacked* network
(``stacked.StackedNet``): the M convolution stacks run as one **grouped convolution** per layer
(model m is group m; other ways: ``stacked.CONV_MODES``, ``fit_group(conv=...)``) and the
read-outs as one **batched matrix product** per block of models with the same voxels, loss and
read-out kind. Nothing is shared between the models but the kernels:

- each model starts from the initial weights of ``ETECRMConfig.build_network(V, seed)``, those it
  has when trained alone (``stacked.build_networks`` draws them in threads, bit for bit the same);
- each keeps its own validation split, batch order (its own shuffle generator) and noise draws (its
  own noise generator), seeded as in ``fit_etecrm``;
- the loss is one number per model (``losses.py`` takes a leading model axis); the group minimizes
  their sum, whose gradient with respect to model m's weights is the gradient of model m's loss;
- Adam works element by element, so one Adam over the stacked weights is M Adams;
- after every epoch each model's epoch score is computed as in ``fit_etecrm``, and each keeps the
  weights of its own best epoch.

So a model trained in a group *is* the model trained alone, up to the order of floating-point sums
(``tests/test_batched.py`` checks weights and chosen epochs against ``fit_etecrm`` on the CPU).

What models of one group must share (:data:`SHARED_FIELDS`): the images, the network's shape, the
batch size, epochs, optimizer settings, validation fraction and precision. They may differ in seed,
responses (any ROI), loss, mean penalty, noise and read-out kind (``ablations`` variants).

**Memory.** :func:`estimate_memory` adds up what a group holds on the device before it trains;
:func:`plan_groups` splits the models into groups that fit the budget (default: 90% of the GPU's
free memory), which then train one after another. Checkpoints (``fit_etecrm(checkpoint=...)``)
are not written here: the runner that calls this keeps one results file per model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import tqdm.auto

from . import gpu
from .device import describe_device, get_device
from .evaluation import pearson_r
from .losses import loss_function
from .stacked import Block, StackedNet, build_networks, check_conv
from .training import (
    ETECRMConfig,
    ETECRMModel,
    TrainingHistory,
    check_losses_finite,
    check_responses,
    prepare_images,
    record_epoch,
    selection_score,
    split_train_val,
    start_at_mean_response,
)

SHARED_FIELDS = (
    "image_size",
    "channels",
    "n_layers",
    "batch_size",
    "epochs",
    "learning_rate",
    "weight_decay",
    "val_fraction",
    "precision",
    "cuda_graph",
)
"""The fields of ``ETECRMConfig`` that every model of one group must share."""

FIXED_BYTES = 512 * 2**20  # cuDNN work space, the CUDA graph's pool, the allocator's blocks
MEMORY_SAFETY = 1.3  # the estimate is multiplied by this (allocator slack, cuDNN work space)
CHANNELS_LAST = True  # on a GPU the convolutions in channels-last layout (gpu.prepare_network)
CONV = "grouped"  # how fit_group computes the convolutions unless told (stacked.CONV_MODES)


@dataclass
class Member:
    """One model of a group: ``responses`` ``(N, V)`` to the group's N images, config, seed."""

    responses: np.ndarray
    config: ETECRMConfig
    seed: int = 0
    description: str = "ETECRM"


def block_key(member: Member) -> tuple:
    c = member.config
    return (np.shape(member.responses)[1], c.loss, c.mean_penalty, c.readout_weights == "squared")


def check_group(members: list) -> ETECRMConfig:
    """The shared config of ``members`` (the first one's); a ValueError names fields that differ."""
    if not members:
        raise ValueError("a group needs at least one model")
    first = members[0].config
    differ = [
        f for f in SHARED_FIELDS if any(getattr(m.config, f) != getattr(first, f) for m in members)
    ]
    if differ:
        raise ValueError(
            f"the models of one group must share {', '.join(differ)}; train models that differ in "
            "these in separate groups (fit_group once per setting)"
        )
    return first


# ============================================================================ the stacked network


# ============================================================================ memory
def estimate_memory(
    n_images: int, members: list, precision: str = "bf16", conv: str | None = None
) -> dict:
    """Bytes a group holds on the device while it trains: ``{"shared": int, "per_model": [int]}``.

    Shared: the images (float32) and ``FIXED_BYTES``. Per model, from its shape (``ETECRMNet``):
    its responses; weights, gradients, Adam's two moments, the best epoch's copy and the network it
    is handed back in (6 float32 copies), plus the read-out's ``W * W`` in low precision; the
    activations kept for the backward pass of one batch (convolution and ReLU outputs and their
    gradients); one chunk of validation images, a layer at a time; and an epoch's noise and
    training predictions. All times ``MEMORY_SAFETY``. ``precision``: the resolved one
    (``gpu.precision_for``): activations take 4 bytes in "fp32", else 2. ``conv`` "unfold" and
    "loop-unfold" also keep every layer's image patches (9 x its input) for the backward pass,
    twice (float32 and the low-precision copy for the first layer; the patches and their gradient
    for the others), and form the largest layer's patches of the validation chunk. Measured on an
    H100 (``benchmarks/bench_batched.py``): 25 full-size models peaked at 20.3 GB ("grouped").
    """
    config = check_group(members)
    conv = check_conv(CONV if conv is None else conv)
    act_bytes = 4 if precision == "fp32" else 2
    per_image = sum(
        config.channels * (config.image_size // 2 ** (i + 1)) ** 2 for i in range(config.n_layers)
    )
    n_features = per_image and config.channels * (config.image_size // 2**config.n_layers) ** 2
    conv_params = sum(
        config.channels * (1 if i == 0 else config.channels) * 9 + config.channels
        for i in range(config.n_layers)
    )
    n_fit = n_images - int(round(n_images * config.val_fraction))
    largest = config.channels * (config.image_size // 2) ** 2  # the first layer's output
    patches = [0]  # values of one image's patches, per layer ("unfold" keeps them)
    if conv in ("unfold", "loop-unfold"):
        patches = [
            9 * (config.image_size // 2 ** (i + 1)) ** 2 * (1 if i == 0 else config.channels)
            for i in range(config.n_layers)
        ]
    per_model = []
    for member in members:
        v = np.shape(member.responses)[1]
        params = conv_params + n_features * v + v
        optimizer = 6 * 4 * params + (4 + act_bytes) * n_features * v
        batch = config.batch_size * (
            4 * per_image * act_bytes + 4 * config.image_size**2 + 2 * sum(patches) * act_bytes
        )
        # no_grad: a layer at a time
        val = min(256, n_images - n_fit) * (2 * largest + max(patches)) * act_bytes
        epoch = 3 * n_fit * v * 4 + n_images * v * 4
        per_model.append(int(MEMORY_SAFETY * (optimizer + batch + val + epoch)))
    shared = FIXED_BYTES + n_images * 4 * config.image_size**2
    return {"shared": int(MEMORY_SAFETY * shared), "per_model": per_model}


def memory_budget(device: torch.device) -> float:
    """Bytes a group may use: 90% of the GPU's free memory; unlimited (inf) on the CPU."""
    if device.type != "cuda":
        return math.inf
    free, _ = torch.cuda.mem_get_info(device)
    return 0.9 * free


def plan_groups(estimate: dict, budget: float) -> list:
    """Split models ``0..M-1`` into consecutive groups whose estimated bytes fit ``budget``.

    A model too large even alone gets a group of its own (it then trains as ``fit_etecrm`` would,
    with smaller batches if it must)."""
    groups, current, used = [], [], estimate["shared"]
    for i, need in enumerate(estimate["per_model"]):
        if current and used + need > budget:
            groups.append(current)
            current, used = [], estimate["shared"]
        current.append(i)
        used += need
    return groups + [current] if current else groups


# ============================================================================ the trainer
def fit_group(
    images,
    members: list,
    device=None,
    progress: bool = True,
    budget: float | None = None,
    description: str = "ETECRM group",
    conv: str | None = None,
) -> list:
    """Train every :class:`Member` on ``images`` ``(N, H, W)`` -> one ``ETECRMModel`` per member.

    The models come back in the order given, each as ``fit_etecrm(images, member.responses,
    member.config, member.seed)`` would return it (``.net`` at the chosen epoch, ``.history``,
    ``.val_r``). ``budget``: bytes the group may use (default :func:`memory_budget`); a group that
    does not fit is split (:func:`plan_groups`) and its parts train one after another. ``conv``:
    how the convolutions are computed (``stacked.CONV_MODES``; None: :data:`CONV`).

    Precision ``config.precision`` as in ``fit_etecrm`` (``gpu.precision_for``). With "fp16" (a
    T4) the models train one at a time through this same code: float16's loss scaling skips a step
    whenever a gradient overflows, and one scale for a group would skip it for every model at once.
    """
    config = check_group(members)
    conv = check_conv(CONV if conv is None else conv)
    device = get_device(device)
    x = prepare_images(images, config.image_size)
    precision = gpu.precision_for(config.precision, device)
    estimate = estimate_memory(x.shape[0], members, precision, conv)
    budget = memory_budget(device) if budget is None else budget
    plan = plan_groups(estimate, budget)
    if precision == "fp16":
        plan = [[i] for i in range(len(members))]
    results = [None] * len(members)
    for group in plan:
        trained = train_stacked(x, [members[i] for i in group], device, progress, description, conv)
        for i, model in zip(group, trained):
            results[i] = model
    return results


def _stacked_setup(x, members, device, conv):
    """Members in block order, blocks, the stacked network and every model's data on ``device``."""
    config = members[0].config
    order = sorted(range(len(members)), key=lambda i: block_key(members[i]))
    members = [members[i] for i in order]
    blocks, start = [], 0
    for i in range(1, len(members) + 1):
        if i == len(members) or block_key(members[i]) != block_key(members[start]):
            v, loss, penalty, squared = block_key(members[start])
            blocks.append(Block(start, i, v, loss, penalty, squared))
            start = i
    ys = [check_responses(m.responses, x.shape[0]).to(device) for m in members]
    splits = [split_train_val(x.shape[0], config.val_fraction, m.seed) for m in members]
    x = x.to(device)
    nets = build_networks([(m.config, y.shape[1], m.seed) for m, y in zip(members, ys)], device)
    for m, net, y, (fit, _) in zip(members, nets, ys, splits):
        if m.config.loss == "mse":
            start_at_mean_response(net, x[fit], y[fit], config.precision)
    stacked = StackedNet(nets, blocks, conv).to(device)
    stacked.channels_last = CHANNELS_LAST and device.type == "cuda"
    return order, members, blocks, ys, splits, x, stacked, nets


def train_stacked(x, members, device, progress, description, conv=None) -> list:
    """Train one group that fits in memory (``x``: prepared images ``(N, 1, S, S)``): the loop of
    ``fit_etecrm``, every line for M models. :func:`fit_group` checks, estimates, splits first."""
    config = members[0].config
    setup = _stacked_setup(x, members, device, check_conv(CONV if conv is None else conv))
    order, members, blocks, ys, splits, x, stacked, nets = setup
    n_models = len(members)
    n_fit = len(splits[0][0])
    batch_size = min(config.batch_size, n_fit)
    n_steps = n_fit // batch_size
    precision, scaler = gpu.precision_and_scaler(config.precision, device)
    graphed = config.cuda_graph and device.type == "cuda" and precision != "fp16"
    optimizer = gpu.make_optimizer(
        stacked.parameters(), config.learning_rate, config.weight_decay, device, graphed
    )
    y_blocks = [torch.stack(ys[b.start : b.stop]) for b in blocks]  # (m, N, V) each
    fit_idx = torch.stack([torch.as_tensor(fit) for fit, _ in splits])  # (M, n_fit) CPU
    val_idx = torch.stack([torch.as_tensor(val) for _, val in splits]).to(device)
    shuffles = [torch.Generator().manual_seed(m.seed) for m in members]
    noise_gens = [torch.Generator(device=device).manual_seed(m.seed + 1_000_003) for m in members]

    def train_step(idx, *noises):
        """One step of every model: ``idx (M, B)`` image indices, noise ``(m, B, V)`` per block."""
        stacked.train()
        with gpu.autocast(device, precision):
            preds = stacked(x[idx].squeeze(2))
        losses = []
        for block, pred, y, noise in zip(blocks, preds, y_blocks, noises):
            target = torch.gather(
                y, 1, idx[block.start : block.stop, :, None].expand(-1, -1, y.shape[2])
            )
            losses.append(
                loss_function(block.loss)(pred.float() + noise, target, block.mean_penalty)
            )
        loss = torch.cat([loss.reshape(-1) for loss in losses])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss.sum()).backward()  # = .backward() unless float16's loss scaling is on
        scaler.step(optimizer)
        scaler.update()
        return loss.detach(), tuple(pred.detach().float() for pred in preds)

    step = train_step
    if graphed:
        example = (torch.zeros(n_models, batch_size, dtype=torch.long, device=device),) + tuple(
            torch.zeros(b.stop - b.start, batch_size, b.n_voxels, device=device) for b in blocks
        )
        step = gpu.cuda_graph_step(train_step, example, list(stacked.parameters()), optimizer)
    histories = [
        TrainingHistory(batch_size=batch_size, device=describe_device(device), precision=precision)
        for _ in members
    ]
    best = {
        "tensors": [p.detach().clone() for p in stacked.parameters()],
        "score": [-math.inf] * n_models,
        "val_r": [torch.zeros(y.shape[1]) for y in ys],
    }
    for epoch in tqdm.auto.tqdm(
        range(config.epochs), desc=description, disable=not progress, leave=False
    ):
        started = time.perf_counter()
        # 1. every model's own order of its fitting images and its own noise for this epoch
        idx = torch.stack(
            [fit_idx[i][torch.randperm(n_fit, generator=g)] for i, g in enumerate(shuffles)]
        )[:, : n_steps * batch_size].to(device)
        noises = [
            torch.stack(
                [
                    _noise(members[i], noise_gens[i], idx.shape[1], block)
                    for i in range(block.start, block.stop)
                ]
            )
            for block in blocks
        ]
        # 2. one pass: every step trains all models on their own batches
        losses = torch.zeros(n_steps, n_models, device=device)
        fit_preds = [torch.zeros_like(noise) for noise in noises]
        for s in range(n_steps):
            rows = slice(s * batch_size, (s + 1) * batch_size)
            losses[s], preds = step(idx[:, rows], *[noise[:, rows] for noise in noises])
            for fit_pred, pred in zip(fit_preds, preds):
                fit_pred[:, rows] = pred
        # 3. each model's epoch score, as in fit_etecrm; each keeps its own best epoch
        val_preds = _predict_stacked(stacked, x, val_idx, device, precision)
        seconds = gpu.seconds_since(started, device) / n_models
        for b, block in enumerate(blocks):
            for i in range(block.start, block.stop):
                check_losses_finite(losses[:, i], epoch, members[i].description)
                train_r = pearson_r(fit_preds[b][i - block.start], ys[i][idx[i]])
                val_r = pearson_r(val_preds[b][i - block.start], ys[i][val_idx[i]])
                score = selection_score(train_r, val_r, members[i].config.selection_voxels)
                if score > best["score"][i]:
                    best["score"][i], best["val_r"][i] = score, val_r.cpu()
                    _keep(stacked, best["tensors"], i)
                    histories[i].best_epoch = epoch
                record_epoch(
                    histories[i],
                    losses[:, i],
                    train_r,
                    val_r,
                    score,
                    histories[i].best_epoch,
                    seconds,
                )
    return _unstack(stacked, nets, members, best, histories, order, device)


def _noise(member: Member, generator, n_rows: int, block: Block) -> torch.Tensor:
    """One epoch's noise of one model, ``(n_rows, V)``: drawn as ``fit_etecrm`` draws it."""
    draw = torch.randn(n_rows, block.n_voxels, generator=generator, device=generator.device)
    return member.config.noise_std * draw


@torch.no_grad()
def _predict_stacked(stacked, x, idx, device, precision: str, batch_size: int = 256) -> list:
    """Evaluation-mode predictions of every model on its own images ``x[idx[m]]``, in chunks of
    ``batch_size`` images as ``training.predict``: one float32 ``(m, N, V)`` per block."""
    stacked.eval()
    chunks = []
    for start in range(0, idx.shape[1], batch_size):
        with gpu.autocast(device, precision):
            chunks.append(stacked(x[idx[:, start : start + batch_size]].squeeze(2)))
    return [torch.cat([c[b].float() for c in chunks], dim=1) for b in range(len(stacked.blocks))]


def _keep(stacked: StackedNet, tensors: list, model: int) -> None:
    """Copy model ``model``'s weights into ``tensors`` (the best epoch's, as ``slices``)."""
    with torch.no_grad():
        for (p, first, _), t in zip(stacked.slices(), tensors):
            if first <= model < first + p.shape[0]:
                t[model - first].copy_(p[model - first])


def _unstack(stacked, nets, members, best, histories, order, device) -> list:
    """One ``ETECRMModel`` per member, at its best epoch, in the order the members were given:
    the member's own network (built for the group, on ``device``) gets the best epoch's weights."""
    models = [None] * len(members)
    for i, (member, net) in enumerate(zip(members, nets)):
        with torch.no_grad():
            net.load_state_dict(stacked.state_of(i, best["tensors"]))
        net = gpu.prepare_network(net, device).eval()
        model = ETECRMModel(member.config, seed=member.seed, device=device, progress=False)
        model.net, model.history = net, histories[i]
        model.val_r = best["val_r"][i].float().numpy()
        models[order[i]] = model
    return models
