"""The one place that decides where tensors live."""

from __future__ import annotations

import torch


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when a GPU is present, else the CPU.

    A given device must be the CPU or a CUDA GPU that torch sees: anything else (``"mps"``,
    ``"meta"``, ``"cuda:3"`` on a one-GPU machine, a typo) is a ValueError that says what to use.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device {str(device)!r} is not supported: etecrm runs on 'cpu' or an NVIDIA GPU "
            "('cuda', 'cuda:0'); leave the device out to use a GPU only when there is one"
        )
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(device)!r} asks for a GPU, but torch sees {torch.cuda.device_count()} "
            "CUDA GPU(s); use 'cpu', or leave the device out to use a GPU only when there is one"
        )
    return chosen


def describe_device(device: torch.device | None = None) -> str:
    """A human-readable name of the device, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'."""
    device = get_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
