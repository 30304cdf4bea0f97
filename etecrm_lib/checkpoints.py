"""Checkpoints of one ETECRM training run: stop (a Colab disconnect, Ctrl-C) and continue exactly.

``training.fit_etecrm(..., checkpoint=path)`` calls :func:`save` after every epoch and, if the file
exists when it starts, :func:`load` before the first. A checkpoint holds everything the next epoch
depends on (weights, Adam state, the random generators, the best epoch so far and the history), so
a resumed run gives the same weights as one that was never interrupted. It is refused unless it
comes from the same configuration, seed and training data (``fingerprint``); only ``epochs`` may
differ, to train longer.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields

import torch

from .storage import CorruptFileError, atomic_write

# configuration fields a checkpoint may be resumed with other values of
RESUMABLE_FIELDS = ("epochs",)
# history fields that are lists of (V,) arrays
PER_VOXEL = ("train_r", "val_r")


def data_fingerprint(images: torch.Tensor, responses: torch.Tensor) -> str:
    """SHA-256 of the training arrays (CPU tensors), so a checkpoint is only resumed on the data it
    was trained on."""
    h = hashlib.sha256()
    for t in (images, responses):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint(config_dict: dict, seed: int, data_hash: str) -> dict:
    """What must match for a checkpoint to be resumed: configuration (but for ``RESUMABLE_FIELDS``),
    seed, data."""
    settings = {k: v for k, v in config_dict.items() if k not in RESUMABLE_FIELDS}
    return {"config": settings, "seed": int(seed), "data": data_hash}


def save(
    path, run_fingerprint: dict, net, optimizer, generators: tuple, best: dict, history
) -> None:
    """Write everything needed to continue the run, atomically (temp file, then rename).

    generators : ``(shuffle, noise)`` torch generators;
    best : ``{"state", "score", "epoch", "val_r"}``;
    history : a ``training.TrainingHistory``.
    """
    payload = {
        "fingerprint": run_fingerprint,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "generators": [g.get_state().cpu() for g in generators],
        "best": {
            "state": {k: v.cpu() for k, v in best["state"].items()},
            "score": best["score"],
            "epoch": best["epoch"],
            "val_r": best["val_r"].cpu(),
        },
        # per-voxel arrays as tensors: the checkpoint is read back with weights_only=True
        "history": {
            f.name: [torch.as_tensor(a) for a in getattr(history, f.name)]
            if f.name in PER_VOXEL
            else getattr(history, f.name)
            for f in fields(history)
        },
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def load(path, run_fingerprint: dict) -> dict:
    """Read a checkpoint written by :func:`save`; a ValueError unless it comes from the same run."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any unreadable file gets the same clear message
        raise CorruptFileError(  # torch's text is not relayed: it advises loading unsafely
            f"{path} is not a readable ETECRM checkpoint ({type(err).__name__}); delete it to "
            "start afresh"
        ) from None
    old = ckpt.get("fingerprint", {}) if isinstance(ckpt, dict) else {}
    if old != run_fingerprint:
        old_config = old.get("config", {})
        diffs = [
            f"{k}: {old_config.get(k)!r} in the checkpoint, {v!r} now"
            for k, v in run_fingerprint["config"].items()
            if old_config.get(k) != v
        ]
        if old.get("seed") != run_fingerprint["seed"]:
            diffs.append(
                f"seed: {old.get('seed')} in the checkpoint, {run_fingerprint['seed']} now"
            )
        if old.get("data") != run_fingerprint["data"]:
            diffs.append("training data differ")
        raise ValueError(
            f"checkpoint {path} comes from a different run "
            f"({'; '.join(diffs) or 'unknown format'}); "
            "use another checkpoint path or delete this file to start afresh"
        )
    return ckpt
