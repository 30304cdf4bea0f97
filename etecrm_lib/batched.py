"""Training many ETECRM models in one pass: the five ROIs of a subject, several seeds, ablation variants.

One ETECRM network is small: on a GPU, training it alone spends most of its time launching kernels,
not computing. Here K networks of the same architecture are trained together: their parameters
are stacked along a new first axis (``(K, ...)``), and ``torch.func.vmap`` runs the one-model
forward pass of ``models.py`` over that axis (a batched convolution becomes one grouped
convolution), so each step launches about as many kernels as training one model.

It is the same maths as training each model alone with :func:`training.fit_etecrm`:

- each model gets its own initial weights, validation split, batch order and regularization noise,
  drawn from its own seed exactly as ``fit_etecrm`` draws them;
- the loss is a sum over models, so each model's gradient comes from its own loss only, and AdamW
  works element by element, so one optimiser over the stacked tensors updates each model as its
  own optimiser would;
- ROIs have different voxel counts: every model's regression layer is padded to the largest count
  V_max with zero rows, and the padded voxels get voxel weight 0, which removes them from the loss
  (their gradients are exactly 0, so the padding stays 0);
- early stopping is per model: a model that stops keeps its best weights and its history ends there
  (its parameters keep moving in the stack, but nothing of it is recorded any more).

Same weights up to floating-point rounding (a grouped convolution adds in another order), which
``tests/test_batched.py`` checks in float32. In bf16 (``mixed_precision`` on a GPU) the rounding is
coarse enough that the runs drift apart over many steps: equally good models, not the same
weights; use ``mixed_precision=False`` where the exact equality matters.

Models with one seed see the same images in the same order, so their first layer reads a single
batch (one convolution with K times the filters); with different seeds every layer is a grouped
convolution. On an H100 with the whole step in a CUDA graph (see ``training.step_runner``), the five
ROI models of a subject (1750 images of 128 x 128, batch 64) train 200 epochs in about 25 s, as
fast as training them one after another with graphs: once the launch overhead is gone, cuDNN's
grouped convolutions are no faster than K separate small ones. Batching is still the one call
that trains an ablation grid, and it is what saves the time on the CPU and without graphs. What must be shared by all models, because they are one stack
and one optimiser: the network's shape and the optimisation settings (``SHARED_FIELDS``). What may
differ: ROI, seed, ``loss``, ``voxel_weights``, ``weight_power``, ``noise_std``, ``dropout``,
``patience`` -- everything an ablation switches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from .device import describe_device, get_device
from .losses import batch_pearson_r, correlation_loss, mse_loss, voxel_weights_from_r
from .models import ETECRMNet
from .training import (ETECRMConfig, EarlyStopping, TrainedModel, TrainingHistory, autocast, check_finite_losses,
                       check_responses, clamp_batch_size, draw_epoch_noise, largest_batch_that_fits,
                       make_generators, make_optimizer, prepare_images, seconds_since, split_train_val, step_runner,
                       use_cuda_graph)

SHARED_FIELDS = ("image_size", "channels", "first_kernel", "readout", "epochs", "batch_size", "learning_rate",
                 "weight_decay", "val_fraction", "mixed_precision", "cuda_graph")


@dataclass
class ModelSpec:
    """One model to train: which ROI, with which configuration and seed, under which name."""

    roi: str
    config: ETECRMConfig
    seed: int = 0
    name: str = "etecrm"


def specs_for(rois, config: ETECRMConfig | None = None, seeds=(0,), name: str = "etecrm") -> list:
    """One :class:`ModelSpec` per (ROI, seed) pair, all with ``config``."""
    config = config or ETECRMConfig()
    return [ModelSpec(roi, config, int(seed), name) for roi in rois for seed in seeds]


def train_many(dataset, specs, device=None, progress: bool = True) -> list:
    """Train the models of ``specs`` (a list of :class:`ModelSpec`) together on ``dataset``'s train split.

    Returns one :class:`training.TrainedModel` per spec, in order; ``model.score(dataset)`` scores it.
    """
    specs = list(specs)
    if not specs:
        raise ValueError("give at least one ModelSpec to train")
    for spec in specs:
        dataset.check_roi(spec.roi)
    models = fit_many(dataset.train.stimuli, [dataset.train.responses[s.roi] for s in specs],
                      [s.config for s in specs], [s.seed for s in specs], device, progress)
    for model, spec in zip(models, specs):
        model.roi, model.name = spec.roi, spec.name
    return models


def check_shared(configs) -> None:
    """Refuse configurations that cannot share one stack and one optimiser, naming the fields that differ."""
    first = configs[0]
    differ = sorted({f for c in configs[1:] for f in SHARED_FIELDS if getattr(c, f) != getattr(first, f)})
    if differ:
        raise ValueError(f"models trained together must share {', '.join(differ)} (they differ here); "
                         "train such groups separately")


def pad_voxels(state: dict, n_voxels: int) -> dict:
    """Pad every regression-layer parameter (voxel axis first) with zero rows up to ``n_voxels``."""
    out = {}
    for name, value in state.items():
        if name.startswith("readout.") and value.shape[0] < n_voxels:
            pad = value.new_zeros((n_voxels - value.shape[0],) + tuple(value.shape[1:]))
            value = torch.cat([value, pad])
        out[name] = value
    return out


def fit_many(images, responses: list, configs: list, seeds: list, device=None, progress: bool = True) -> list:
    """Train K models on the same images, model k on ``responses[k]`` ``(N, V_k)`` with ``configs[k]``, ``seeds[k]``.

    The batched counterpart of :func:`training.fit_etecrm` (no checkpoints). Returns K TrainedModels.
    """
    if not (len(responses) == len(configs) == len(seeds)) or not responses:
        raise ValueError(f"give as many responses, configs and seeds (got {len(responses)}, {len(configs)}, {len(seeds)})")
    check_shared(configs)
    cfg, n_models = configs[0], len(configs)
    device = get_device(device)
    x_all = prepare_images(images, cfg.image_size).to(device)
    ys = [check_responses(r, x_all.shape[0]) for r in responses]
    n_vox = [y.shape[1] for y in ys]
    v_max = max(n_vox)
    voxel_mask = torch.stack([torch.arange(v_max) < v for v in n_vox]).to(device)              # (K, V_max)
    targets = torch.stack([torch.nn.functional.pad(y, (0, v_max - y.shape[1])) for y in ys]).to(device)  # (K, N, V_max)

    # each model's own validation split, initial weights and generators, as fit_etecrm draws them
    splits = [split_train_val(x_all.shape[0], cfg.val_fraction, s) for s in seeds]
    fit_idx = torch.stack([torch.as_tensor(f) for f, _ in splits]).to(device)                   # (K, n_fit)
    val_idx = torch.stack([torch.as_tensor(v) for _, v in splits]).to(device)                   # (K, n_val)
    n_fit = fit_idx.shape[1]
    nets = [c.build_network(v, s) for c, v, s in zip(configs, n_vox, seeds)]
    states = [pad_voxels(net.state_dict(), v_max) for net in nets]
    params = {name: torch.stack([st[name] for st in states]).to(device).requires_grad_() for name in states[0]}
    with torch.device("meta"):
        template = ETECRMNet(v_max, cfg.image_size, cfg.channels, cfg.first_kernel, cfg.readout)
    n_features = template.n_features
    graphed = use_cuda_graph(cfg, device, device)
    optimizer = make_optimizer(list(params.values()), cfg, device, capturable=graphed)
    generators = [make_generators(s, device) for s in seeds]
    # models with one seed see the same images in the same order, and the same input noise if their
    # noise_std agree and their generators stay in step (they do unless some draw dropout masks and others
    # do not): then the first layer reads one batch for all (a plain convolution with K times the filters)
    # instead of one batch per model (a grouped convolution, much slower for 1 input channel)
    same_noise = len({c.noise_std for c in configs}) == 1 and (
        cfg.noise_std == 0 or len({c.dropout > 0 for c in configs}) == 1)
    shared_input = len(set(seeds)) == 1 and same_noise

    def forward_one(p, x, noise, mask):
        return functional_call(template, p, (x, noise, mask))

    def predict_all(x, noise=None, mask=None):
        """``(K, B, 1, S, S)`` (or ``(B, 1, S, S)`` shared by all) -> ``(K, B, V_max)`` float32."""
        per_model = None if shared_input else 0
        in_dims = (0, per_model, None if noise is None else per_model, None if mask is None else 0)
        with autocast(device, cfg.mixed_precision):
            return vmap(forward_one, in_dims=in_dims)(params, x, noise, mask).float()

    def model_images(idx):
        """The images of index array ``idx (K, B)``: ``(K, B, 1, S, S)``, or ``(B, 1, S, S)`` if shared."""
        return x_all[idx[0]] if shared_input else x_all[idx]

    is_corr = torch.tensor([c.loss == "corr" for c in configs], device=device)
    bias_trains = (~is_corr).float()[:, None]                                                   # (K, 1)
    use_mse = any(c.loss == "mse" for c in configs)

    def model_losses(pred, y, w):
        """Each model's own loss ``(K,)``: correlation or MSE, weighted by its voxel weights."""
        corr = vmap(correlation_loss)(pred, y, w)
        return torch.where(is_corr, corr, vmap(mse_loss)(pred, y, w)) if use_mse else corr

    weights = voxel_mask.float()                                                                 # (K, V_max)
    rows_k = torch.arange(n_models, device=device)[:, None]

    def try_step(b):
        idx = fit_idx[:, :b]
        model_losses(predict_all(model_images(idx)), targets[rows_k, idx], weights).sum().backward()
        optimizer.zero_grad(set_to_none=True)

    batch_size = largest_batch_that_fits(try_step, clamp_batch_size(cfg.batch_size, n_fit), device)
    n_steps, n_used = n_fit // batch_size, (n_fit // batch_size) * batch_size
    histories = [TrainingHistory(batch_size=batch_size, device=describe_device(device)) for _ in configs]
    stoppers = [EarlyStopping(c.patience) for c in configs]
    active = [True] * n_models
    best = {name: p.detach().clone() for name, p in params.items()}
    best_weights, best_val_r = weights.clone(), torch.zeros_like(weights)

    # each step copies its batch into these buffers (a CUDA graph replays the same addresses)
    batch_idx = torch.zeros(n_models, batch_size, dtype=torch.long, device=device)
    noise_buf = mask_buf = None
    if any(c.noise_std for c in configs):
        noise_buf = torch.zeros(n_models, batch_size, 1, cfg.image_size, cfg.image_size, device=device)
    if any(c.dropout for c in configs):
        mask_buf = torch.ones(n_models, batch_size, n_features, device=device)

    def train_step():
        noise_b = None if noise_buf is None else (noise_buf[0] if shared_input else noise_buf)
        pred = predict_all(model_images(batch_idx), noise_b, mask_buf)
        losses = model_losses(pred, targets[rows_k, batch_idx], weights)
        losses.sum().backward()
        params["readout.bias"].grad.mul_(bias_trains)   # as fit_etecrm: no bias under the correlation loss
        optimizer.step()
        return losses.detach()

    run_step = step_runner(train_step, list(params.values()), optimizer, device, graphed)

    bar = tqdm(range(cfg.epochs), desc=f"ETECRM x{n_models}", disable=not progress, leave=False)
    for epoch in bar:
        started = time.perf_counter()
        # 1. each model's order and noise, from its own generators
        order = torch.stack([torch.randperm(n_fit, generator=g[0])[:n_used] for g in generators]).to(device)
        order = torch.gather(fit_idx, 1, order)                                 # (K, n_used) image indices
        drawn = [draw_epoch_noise(c, n_used, n_features, g[1], device) for c, g in zip(configs, generators)]
        noise = _stack_or_none([d[0] for d in drawn], (n_used, 1, cfg.image_size, cfg.image_size), 0.0, device)
        mask = _stack_or_none([d[1] for d in drawn], (n_used, n_features), 1.0, device)
        # 2. one pass; every step updates all K models
        step_losses = torch.zeros(n_models, n_steps, device=device)
        for step in range(n_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            batch_idx.copy_(order[:, rows])
            if noise is not None:
                noise_buf.copy_(noise[:, rows])
            if mask is not None:
                mask_buf.copy_(mask[:, rows])
            step_losses[:, step] = run_step()
        # 3. validation r per voxel and voxel weights, per model
        with torch.no_grad():
            val_pred = torch.cat([predict_all(model_images(val_idx[:, i:i + 256]))
                                  for i in range(0, val_idx.shape[1], 256)], 1)
            val_r = vmap(batch_pearson_r)(val_pred, targets[rows_k, val_idx]) * voxel_mask     # (K, V_max)
            for k, c in enumerate(configs):
                if c.voxel_weights:
                    weights[k] = voxel_weights_from_r(val_r[k], c.weight_power, voxel_mask[k])
        seconds = seconds_since(started, device)
        # 4. bookkeeping and early stopping of the models still running
        for k in range(n_models):
            if not active[k]:
                continue
            check_finite_losses(step_losses[k], epoch, f"model {k}")
            histories[k].record(step_losses[k].mean(), val_r[k, :n_vox[k]], weights[k, :n_vox[k]], seconds)
            if stoppers[k].update(histories[k].val_mean_r[-1], epoch):
                for name, p in params.items():
                    best[name][k] = p.detach()[k]
                best_weights[k], best_val_r[k] = weights[k], val_r[k]
            histories[k].best_epoch = stoppers[k].best_epoch
            histories[k].stopped_early = stoppers[k].should_stop(epoch)
            active[k] = not histories[k].stopped_early
        bar.set_postfix(running=sum(active), val_median_r=" ".join(f"{h.val_median_r[-1]:.2f}" for h in histories))
        if not any(active):
            break
    bar.close()

    # 5. one ordinary network per model, with its best weights and its own voxel count
    models = []
    for k, (c, v, s) in enumerate(zip(configs, n_vox, seeds)):
        net = nets[k]
        net.load_state_dict({name: (b[k][:v] if name.startswith("readout.") else b[k]) for name, b in best.items()})
        net.to(device).eval()
        models.append(TrainedModel(net, c, s, histories[k], best_weights[k, :v].float().cpu().numpy(),
                                   best_val_r[k, :v].float().cpu().numpy()))
    return models


def _stack_or_none(tensors: list, shape: tuple, fill: float, device) -> torch.Tensor | None:
    """Stack per-model noise tensors to ``(K, *shape)``, a model without it filled with ``fill`` (None if none has it)."""
    if all(t is None for t in tensors):
        return None
    return torch.stack([torch.full(shape, fill, device=device) if t is None else t for t in tensors])
