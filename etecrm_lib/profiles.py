"""The two profiles every configuration of the library offers, and the one default.

- ``"quick"``: small and fast (64 x 64 images, a few hundred training images, fewer epochs): a
  chapter runs in minutes on a laptop CPU, and the tests use it.
- ``"full"``: the vim-1-sized experiment, as its authors designed it; it wants a GPU.

Every configuration dataclass has ``for_profile(profile=DEFAULT_PROFILE, ...)`` and starts with
:func:`check_profile`. (Which profile a *chapter* runs is another question, answered by
``book.default_profile``: "full" on a GPU, "quick" on a CPU.)
"""

from __future__ import annotations

from typing import Literal

Profile = Literal["quick", "full"]
PROFILES = ("quick", "full")
DEFAULT_PROFILE: Profile = "full"
ALIASES = {"default": "full", "paper": "full"}
"""Other names still accepted: the simulation calls its full profile "default", the trainer
"paper"."""


def check_profile(profile: str | None) -> Profile:
    """The profile's name, ``"quick"`` or ``"full"`` (None and the aliases mean ``"full"``); else a
    ValueError."""
    if profile is None:
        return DEFAULT_PROFILE
    name = ALIASES.get(profile, profile)
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}: profile must be one of {PROFILES} (or an alias: "
            f"{', '.join(ALIASES)})"
        )
    return name
