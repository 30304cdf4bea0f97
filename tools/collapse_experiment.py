"""Why the released design can collapse on an ROI with little signal: a controlled CPU experiment.

The released loss is ``-mean_v(r_v^3) + 1e-4 * mean(prediction)``. On voxels without signal the
first term gives almost no gradient (``r_v`` near 0, and its cube flatter still), so the tiny second
term is the only push that is the same at every step; Adam divides each step by the gradient's own
size, so a tiny but steady push moves the weights as fast as a large one. Its direction: lower every
prediction. With squared (non-negative) read-out weights on ReLU features, every prediction falls
when a feature falls, so the push silences the feature channels (their ReLUs die) and shrinks the
read-out weights; a dead channel gets no gradient and stays dead.

The experiment trains the released network (three 3x3 stride-2 convolutions of 128 channels,
squared read-out, noise of s.d. 1 on the predictions, Adam at 1e-3) on random images of 64 x 64
pixels whose 400 "voxels" are pure noise (the extreme of a low-signal ROI such as the simulated LO),
with and without the mean penalty, and records after every epoch the share of dead feature
channels of the last layer and the mean squared read-out weight.

    python tools/collapse_experiment.py --out data/results/collapse --seeds 0 1 --epochs 6

Writes ``OUT/collapse_experiment.json`` (atomically); chapter 4 reads it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from etecrm_lib import losses
from etecrm_lib.storage import atomic_write
from etecrm_lib.training import ETECRMConfig

VARIANTS = {"released loss": 1e-4, "without the mean penalty": 0.0}


def run(penalty: float, seed: int, epochs: int, n_images: int, n_voxels: int, size: int) -> list:
    """Train on pure-noise responses; per epoch: dead channels, constant voxels, mean W^2."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_images, 1, size, size, generator=gen) - 0.5
    y = torch.randn(n_images, n_voxels, generator=gen)
    config = ETECRMConfig.for_profile("full", image_size=size, mean_penalty=penalty)
    net = config.build_network(n_voxels, seed=seed)
    optimizer = torch.optim.Adam(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    torch.manual_seed(seed)
    batch, rows = config.batch_size, []
    for epoch in range(epochs):
        order = torch.randperm(n_images)
        for start in range(0, n_images - batch + 1, batch):
            idx = order[start : start + batch]
            pred = net(x[idx])
            pred = pred + config.noise_std * torch.randn_like(pred)
            loss = losses.weighted_correlation_loss(pred, y[idx], mean_penalty=penalty)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            features = net.features(x).flatten(2)  # (N, channels, positions)
            pred = net(x)
            rows.append(
                {
                    "epoch": epoch + 1,
                    "dead_channels": float((features.amax(dim=(0, 2)) <= 0).float().mean()),
                    "constant_voxels": float((pred.std(0) == 0).float().mean()),
                    "mean_w2": float(net.regression_weights().mean()),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/results/collapse")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--voxels", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    curves, start = [], time.time()
    for name, penalty in VARIANTS.items():
        for seed in args.seeds:
            rows = run(penalty, seed, args.epochs, args.images, args.voxels, args.size)
            curves += [{"variant": name, "mean_penalty": penalty, "seed": seed, **r} for r in rows]
            print(name, seed, rows[-1], flush=True)
    record = {
        "what": __doc__.splitlines()[0],
        "command": "python tools/collapse_experiment.py "
        + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        ),
        "setting": {k: v for k, v in vars(args).items() if k != "out"}
        | {"channels": 128, "responses": "pure noise", "device": "cpu"},
        "seconds": round(time.time() - start),
        "curves": curves,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "collapse_experiment.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
