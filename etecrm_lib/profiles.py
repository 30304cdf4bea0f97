"""The two profiles every configuration of the library offers, and the one default.

- ``"quick"``: small and fast (64 x 64 images, a few hundred training images, fewer epochs): a
  chapter runs in minutes on a laptop CPU, and the tests use it.
- ``"full"``: the vim-1-sized experiment, as its authors designed it; it wants a GPU.

Every configuration dataclass has ``for_profile(profile=DEFAULT_PROFILE, ...)`` and starts with
:func:`check_profile`. (Which profile a *chapter* runs is another question, answered by
``book.default_profile``: "full" on a GPU, "quick" on a CPU.)
"""

from __future__ import annotations

import warnings
from typing import Literal

Profile = Literal["quick", "full"]
PROFILES = ("quick", "full")
DEFAULT_PROFILE: Profile = "full"
ALIASES = {"default": "full", "paper": "full"}
"""Old names still accepted, with a DeprecationWarning: "default" (the simulation's) and "paper"
(the trainer's) both mean "full"."""


def check_profile(profile: str | None) -> Profile:
    """The profile's name, ``"quick"`` or ``"full"`` (None and the aliases mean ``"full"``); else a
    ValueError."""
    if profile is None:
        return DEFAULT_PROFILE
    name = ALIASES.get(profile, profile)
    if profile in ALIASES:
        warnings.warn(
            f"profile {profile!r} is an old name of {name!r}; say {name!r} (the old name will go)",
            DeprecationWarning,
            stacklevel=3,
        )
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}: profile must be one of {PROFILES} (or an alias: "
            f"{', '.join(ALIASES)})"
        )
    return name
