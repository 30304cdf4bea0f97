"""One name for each thing, in Python and on the command line; old spellings work for one release.

=============================================  =====================  =========================
what                                           Python                 command line
=============================================  =====================  =========================
the seed of the simulated cortex               ``simulation_seed``    ``--simulation-seed``
a model seed (initial weights, validation      ``seed``; a range:     ``--first-seed``,
split, batch order, noise)                     ``first_seed``,        ``--seeds`` (how many)
                                               ``n_seeds``
the folder of downloaded real data             ``root``               ``--root``
progress bars                                  ``progress``           ``--quiet`` (none)
=============================================  =====================  =========================

Results files keep their stored field names (``data_seed`` in a file's metadata and tables is the
simulation seed): the files on disk do not change. :func:`renamed` is how a function accepts an
old keyword (:data:`OLD_NAMES`) with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings

OLD_NAMES = {
    "data_seed": "simulation_seed",
    "data_root": "root",
    "dest": "root",
    "cache_dir": "root",
    "data_dir": "root",
    "verbose": "progress",
    "--data-seed": "--simulation-seed",
    "--seed": "--simulation-seed",
    "--data-root": "--root",
}
"""Old spelling -> the one name (Python keywords and command-line flags)."""


class Unset:
    """The default of an old keyword: "not given" (None can be a meaningful value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def renamed(value, old_value, old: str, new: str | None = None, stacklevel: int = 3):
    """The value of an argument given under its new name, or under its old one (with a warning).

    ``value``: what the new name holds; ``old_value``: what the old keyword received
    (:data:`UNSET` if it was not given, its default). ``new`` defaults to ``OLD_NAMES[old]``.
    """
    if old_value is UNSET:
        return value
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use "
        f"{new or OLD_NAMES[old]} (same meaning)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return old_value
