"""The control cortices: each model family on a cortex made of its own features (etecrm controls).

A control cortex is the simulation with another ground truth (``simulate(..., ground_truth=...)``):
on ``"gabor"`` every voxel reads out Gabor features, so the Gabor ridge model should win; on
``"cnn"`` every voxel reads out a released-design CNN, so ETECRM should. :func:`run_controls` is an
experiment on the one runner (:mod:`etecrm_lib.runs`): it fits ``gwp_ridge`` (deterministic, once)
and ``etecrm`` (several model seeds) on every ROI, one results file each in the usual layout
(``OUT/results/sim-data0_full_sub1_V1_etecrm_truth-gabor_seed0.npz``; resumable), then writes per
ROI the median test r of both (ETECRM: mean over seeds), the paired bootstrap difference
``gwp_ridge - etecrm`` over test images and ETECRM seeds (``evaluation.paired_bootstrap``) and
which family wins (``seed_statistics.control_winner``: the interval excludes 0) to
``OUT/controls_<ground truth>_<profile>.json``. :func:`load_control_table` reads it back.

    etecrm controls --ground-truth gabor --profile full --seeds 3 --out data/results/controls

At vim-1's noise the Gabor control is mostly undecided; a quieter experiment (the mean of 256
trials per training image, scored against the noise-free test responses) decides it. Quick
profile, 1 ETECRM seed, CPU (generator 4): default experiment undecided in V1, V3, V4, LO (gwp_ridge
wins V2); quiet experiment gwp_ridge wins all five ROIs, +0.136 to +0.208::

    etecrm controls --ground-truth gabor --profile quick --seeds 1 --train-repeats 256 \\
        --noise-free-scoring --out results/controls_quiet
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .data import simulate
from .data.measurement import SimulationConfig
from .data.simulate import GROUND_TRUTHS
from .evaluation import paired_bootstrap, pearson_r
from .profiles import DEFAULT_PROFILE, Profile, check_profile
from .runs import RunSettings, keys_for, provenance, run_keys
from .seed_statistics import control_winner
from .storage import atomic_write, jsonable

MODELS = ("gwp_ridge", "etecrm")
EXPECTED_WINNER = {"gabor": "gwp_ridge", "cnn": "etecrm"}


@dataclass(frozen=True)
class ControlConfig:
    """What :func:`run_controls` runs.

    ground_truth : "gabor" or "cnn"; profile : "quick" or "full" (simulation and models);
    subject, simulation_seed : which simulated subject; seeds : ETECRM's model seeds 0..seeds-1;
    rois : ROIs to fit (None: all); n_bootstrap : resamples of the paired bootstrap;
    train_repeats : trials averaged per training image (None: the profile's, vim-1's 2). More
    trials make a quieter experiment; noise_free_scoring : score against the noise-free test
    responses (``ds.test.oracle``, known in a simulation) instead of the mean of the test trials.
    At vim-1's noise the Gabor control is undecided; trained on the mean of 256 trials and scored
    against the noise-free responses the Gabor model wins it (quick size,
    ``tests/test_controls.py``; scored against the noisy test means the same models are undecided:
    +0.002 [-0.013, +0.045]).
    """

    ground_truth: str = "gabor"
    profile: str = "full"
    subject: int = 1
    simulation_seed: int = 0
    seeds: int = 3
    rois: tuple | None = None
    n_bootstrap: int = 2000
    train_repeats: int | None = None
    noise_free_scoring: bool = False

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "ControlConfig":
        """The same experiment on either profile (3 ETECRM seeds, every ROI), with ``changes``."""
        config = replace(cls(profile=check_profile(profile)), **changes)
        config.check()
        return config

    def check(self) -> None:
        """Raise a ValueError that says what to change."""
        if self.ground_truth not in EXPECTED_WINNER:
            raise ValueError(
                f"ground_truth must be one of {sorted(EXPECTED_WINNER)} (the control cortices; "
                f"the simulation knows {GROUND_TRUTHS}), got {self.ground_truth!r}"
            )
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1 ETECRM model seed, got {self.seeds}")
        if self.train_repeats is not None and self.train_repeats < 1:
            raise ValueError(
                f"train_repeats must be at least 1 trial per image (or None), got "
                f"{self.train_repeats}"
            )
        check_profile(self.profile)


def control_experiment(config: ControlConfig) -> SimulationConfig:
    """The simulated experiment of a control: the profile's, with ``config.train_repeats``."""
    changes = {} if config.train_repeats is None else {"train_repeats": config.train_repeats}
    return SimulationConfig.for_profile(config.profile, **changes)


def median_r(result, responses=None) -> float:
    """A result's median test r over voxels: as it was scored, or against ``responses (N, V)``."""
    if responses is None:
        return result.summary()["median_r"]
    return float(np.median(np.asarray(pearson_r(result.predictions, responses))))


def control_row(
    gwp, etecrm: list, responses, expected: str, n_bootstrap: int = 2000, rescore: bool = False
) -> dict:
    """One ROI of a control table, from the gwp_ridge result and ETECRM's (one per model seed).

    The difference is scored against ``responses``; so are the medians if ``rescore`` (else they
    are the results' own, on the mean test responses).
    """
    comp = paired_bootstrap(gwp, etecrm, responses, n_bootstrap=n_bootstrap)
    scored = responses if rescore else None
    medians = [median_r(res, scored) for res in etecrm]
    return {
        "roi": gwp.roi,
        "etecrm_median_r": float(np.mean(medians)),
        "etecrm_median_r_sd": float(np.std(medians, ddof=1)) if len(etecrm) > 1 else None,
        "gwp_ridge_median_r": median_r(gwp, scored),
        "gwp_minus_etecrm": comp.difference,
        "ci_low": comp.ci_low,
        "ci_high": comp.ci_high,
        "winner": control_winner(comp.ci_low, comp.ci_high),
        "expected_winner": expected,
        "etecrm_wall_s": float(np.mean([res.info.get("wall_time_s") or np.nan for res in etecrm])),
        "device": etecrm[0].info.get("device"),
    }


def run_controls(
    config: ControlConfig | None = None,
    out="results/controls",
    device=None,
    progress: bool = True,
    trainer=None,
    log=print,
    dataset=None,
) -> "ControlTable":
    """Fit both families on the control cortex of ``config``, write its table; returns the table.

    Resumable: finished results files under ``out/results`` are read, not trained again.
    ``trainer``: see :mod:`etecrm_lib.runs` (default: one model at a time). ``dataset``: the control
    cortex (default: simulated from ``config``; a given one must be of ``config.ground_truth``).
    """
    config = config or ControlConfig.for_profile()
    config.check()
    start = time.perf_counter()
    data = (
        dataset
        if dataset is not None
        else simulate(
            config.subject,
            control_experiment(config),
            seed=config.simulation_seed,
            ground_truth=config.ground_truth,
        )
    )
    if data.info.get("ground_truth") != config.ground_truth:
        raise ValueError(
            f"the dataset's ground truth is {data.info.get('ground_truth')!r}, not the control "
            f"{config.ground_truth!r}; simulate it with ground_truth={config.ground_truth!r}"
        )
    rois = list(config.rois or data.rois)
    seeds = range(config.seeds)
    keys = keys_for(data, config.profile, rois, MODELS, seeds)
    settings = RunSettings.start(device, progress)
    desc = f"{config.ground_truth} control"
    found = run_keys(keys, lambda key: data, out, trainer, settings, log=log, desc=desc)
    expected = EXPECTED_WINNER[config.ground_truth]
    rows = []
    for roi in rois:
        mine = {m: [r for k, r in found.items() if (k.roi, k.model) == (roi, m)] for m in MODELS}
        noise_free = config.noise_free_scoring
        responses = (data.test.oracle if noise_free else data.test.responses)[roi]
        rows.append(
            control_row(
                mine["gwp_ridge"][0],
                mine["etecrm"],
                responses,
                expected,
                config.n_bootstrap,
                rescore=noise_free,
            )
        )
    summary = {
        "ground_truth": config.ground_truth,
        "profile": config.profile,
        "subject": config.subject,
        "model_seeds": list(seeds),
        "simulation": {
            k: data.info.get(k) for k in ("seed", "network_seed", "n_train", "train_repeats")
        },
        "scored_against": "noise-free test responses"
        if config.noise_free_scoring
        else "mean of the test trials",
        "provenance": provenance(),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    path = Path(out) / f"controls_{config.ground_truth}_{config.profile}.json"
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(jsonable(summary), indent=1))
    return load_control_table(out, config.ground_truth, config.profile)


@dataclass
class ControlTable:
    """One control cortex's table, as :func:`run_controls` writes it
    (``controls_<truth>_<profile>.json``).

    rows : one dict per ROI: ``etecrm_median_r`` (mean over ``model_seeds``),
    ``gwp_ridge_median_r``, ``gwp_minus_etecrm`` with its 95% paired-bootstrap interval
    ``ci_low``/``ci_high`` (test images and ETECRM seeds), ``winner`` ("gwp_ridge", "etecrm" or
    "undecided") and ``expected_winner``.
    """

    ground_truth: str
    profile: str
    subject: int
    model_seeds: list
    rows: list
    train_repeats: int | None = None
    scored_against: str = "mean of the test trials"

    def display_rows(self) -> list:
        """The rows as a chapter shows them (:func:`book.show_table`)."""
        return [
            {
                "roi": r["roi"],
                "etecrm": r["etecrm_median_r"],
                "gwp_ridge": r["gwp_ridge_median_r"],
                "gwp_ridge − etecrm": r["gwp_minus_etecrm"],
                "95% interval": f"{r['ci_low']:+.3f} to {r['ci_high']:+.3f}",
                "winner": r["winner"],
                "expected": r["expected_winner"],
            }
            for r in self.rows
        ]

    def caption(self) -> str:
        trials = f", training responses the mean of {self.train_repeats} trials per image"
        return (
            f"'{self.ground_truth}' control cortex, {self.profile} profile, subject "
            f"{self.subject}{trials if self.train_repeats else ''}: median r against the "
            f"{self.scored_against} "
            f"(ETECRM: mean over seeds {self.model_seeds}; 95% bootstrap over test images "
            "and seeds)"
        )

    def summary(self) -> str:
        """One sentence: in how many ROIs the expected family wins, and the range of the
        differences."""
        wins = [r["roi"] for r in self.rows if r["winner"] == r["expected_winner"]]
        differences = [r["gwp_minus_etecrm"] for r in self.rows]
        return (
            f"'{self.ground_truth}' control: the expected family "
            f"({self.rows[0]['expected_winner']}) wins in "
            f"{len(wins)} of {len(self.rows)} ROIs ({', '.join(wins) or 'none'}); "
            "gwp_ridge − etecrm ranges "
            f"from {min(differences):+.3f} to {max(differences):+.3f}"
        )


def load_control_table(folder, ground_truth: str, profile: str = "full") -> ControlTable | None:
    """Read ``folder/controls_<ground_truth>_<profile>.json``; None if there is none.

    Every row's ``winner`` is checked against its interval (a file that disagrees with itself is
    refused).
    """
    path = Path(folder) / f"controls_{ground_truth}_{profile}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        table = ControlTable(
            data["ground_truth"],
            data["profile"],
            data["subject"],
            data["model_seeds"],
            data["rows"],
            data.get("simulation", {}).get("train_repeats"),
            data.get("scored_against", "mean of the test trials"),
        )
        for r in table.rows:
            # (not the difference against the interval: a percentile interval may leave its point
            # estimate out)
            if control_winner(r["ci_low"], r["ci_high"]) != r["winner"]:
                raise ValueError(
                    f"ROI {r['roi']}: winner {r['winner']!r} and interval [{r['ci_low']}, "
                    f"{r['ci_high']}] "
                    f"disagree"
                )
    except (KeyError, TypeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"{path} is not a control table written by `etecrm controls` ({err}); write it "
            f"again with `etecrm controls --ground-truth {ground_truth} --profile {profile} "
            f"--out {Path(folder)}`"
        ) from err
    if (table.ground_truth, table.profile) != (ground_truth, profile) or not table.rows:
        raise ValueError(
            f"{path} holds the {table.profile!r} table of {table.ground_truth!r} with "
            f"{len(table.rows)} rows, not the {profile!r} table of {ground_truth!r}"
        )
    return table


def markdown(table: "ControlTable") -> str:
    """A control table as Markdown (what ``etecrm controls`` prints)."""
    lines = [
        f"| ROI | etecrm median r (mean of {len(table.model_seeds)} seeds) | gwp_ridge median r "
        "| gwp - etecrm [95% CI] | winner |",
        "|---|---|---|---|---|",
    ]
    for r in table.rows:
        lines.append(
            f"| {r['roi']} | {r['etecrm_median_r']:.3f} | {r['gwp_ridge_median_r']:.3f} | "
            f"{r['gwp_minus_etecrm']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
            f"| {r['winner']} |"
        )
    return "\n".join(lines)
