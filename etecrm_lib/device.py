"""The one place that decides where tensors live."""

from __future__ import annotations

import torch


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when a GPU is present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A human-readable name of the device, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'."""
    device = get_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
