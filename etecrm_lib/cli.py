"""The ``etecrm`` command: ``etecrm reproduce`` (the whole comparison), ``etecrm datasize``,
``etecrm controls`` and ``etecrm data``.

Examples::

    etecrm reproduce --dataset sim --subject 1 --profile quick --out results/      # 3 model seeds
    etecrm reproduce --dataset sim --profile full --subject 2 --seeds 5 --simulation-seed 1
    etecrm reproduce --dataset sim --profile full --first-seed 5 --seeds 5   # 5 more seeds, added
    etecrm reproduce --dataset sim --profile full --models etecrm gwp_ridge --rois V1 V4
    etecrm table --out results/                     # rebuild tables and figures from the results
    etecrm models                                   # the model and ablation names
    etecrm datasize --profile quick --seeds 2 --out results/data_size  # accuracy vs train-set size
    etecrm controls --ground-truth gabor --profile quick --out results/controls  # a control cortex
    etecrm data simulate --subject 1 --profile quick --save sim1.npz
    etecrm data describe --dataset sim --subject 1 --profile quick
    etecrm data download --dataset kay              # the login-free copy of vim-1 subject 1

Also runs as ``python -m etecrm_lib.cli ...``. Rerunning ``reproduce`` with the same arguments
reuses every finished results file: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from . import data as data_module
from .ablations import DEFAULT_VARIANTS, VARIANTS
from .controls import ControlConfig, markdown, run_controls
from .data.download import DownloadError
from .data_size import DataSizeConfig, crossing_sentences, read_curves, run_data_size
from .device import get_device
from .reproduce import check_settings, rebuild_outputs, reproduce
from .results import MAX_SEED, strip_predictions
from .runs import is_deterministic, train_in_groups
from .tables import load_run
from .verdicts import crossing_table, verdict_table
from .vocabulary import OLD_NAMES

BATCHED_HELP = "train the ETECRM models of each ROI as one network (runs.train_in_groups)"


def _names(values, flag: str) -> list | None:
    """Accept ``--models a b``, ``--models a,b`` or both; None if the flag was not given. A flag
    given with no name at all (``--models ""``) is an error, never "all of them"."""
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise ValueError(
            f"{flag} was given but names nothing ({values!r}); name at least one, or leave "
            f"{flag} out for the default"
        )
    return names


class _Parser(argparse.ArgumentParser):
    """An argument parser that never guesses a flag from its first letters (``--seed`` is not
    ``--seeds``): ``allow_abbrev=False`` for the command and every subcommand."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _add_controls(sub) -> None:
    """The ``etecrm controls`` subcommand."""
    ctl = sub.add_parser(
        "controls",
        help="each model family on a control cortex built from its own features; resumable",
        description="Fit gwp_ridge and ETECRM (several model seeds) on every ROI of a control "
        "cortex, one results file each (reused on a rerun), then write "
        "OUT/controls_<ground truth>_<profile>.json and print its table.",
    )
    ctl.add_argument("--ground-truth", required=True, choices=["gabor", "cnn"])
    ctl.add_argument("--profile", choices=["quick", "full"], default="quick")
    ctl.add_argument("--subject", type=int, default=1)
    ctl.add_argument(
        "--seeds", type=int, default=3, help="ETECRM model seeds 0..SEEDS-1 (default 3)"
    )
    ctl.add_argument("--simulation-seed", type=int, default=0)
    ctl.add_argument(
        "--train-repeats",
        type=int,
        help="trials averaged per training image (default: the profile's, vim-1's 2); more make a "
        "quieter control experiment",
    )
    ctl.add_argument(
        "--noise-free-scoring",
        action="store_true",
        help="score against the noise-free test responses (known in a simulation)",
    )
    ctl.add_argument("--rois", nargs="+", help="ROI names (default: all)")
    ctl.add_argument("--out", default="results/controls", help="output folder")
    ctl.add_argument("--device", help="torch device (default: the GPU if there is one)")
    ctl.add_argument("--quiet", action="store_true", help="no progress bars")
    ctl.add_argument("--batched", action="store_true", help=BATCHED_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="etecrm",
        description="End-to-end fMRI visual encoding (ETECRM): "
        "reproduce the comparison, manage datasets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser(
        "reproduce",
        help="run every model and ablation on every ROI; resumable",
        description="Run every model and ablation on every ROI of one subject, one results file "
        "each (reused on a rerun), then write table.md/.csv/.json and figures.",
    )
    rep.add_argument(
        "--dataset",
        default="sim",
        help="sim, vim1, miyawaki, kay, or a dataset .npz file (default sim)",
    )
    rep.add_argument("--subject", type=int, default=1)
    rep.add_argument("--profile", choices=["quick", "full"], default="quick")
    rep.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="number of model seeds (default 5 on full, 3 on quick); deterministic models run once",
    )
    rep.add_argument(
        "--first-seed", type=int, default=0, help="model seeds are FIRST..FIRST+SEEDS-1 (default 0)"
    )
    rep.add_argument(
        "--simulation-seed",
        type=int,
        default=None,
        help="seed of the simulated cortex (sim only; default 0, the book's subject); in every "
        "file name",
    )
    _old_flag(rep, "--data-seed", "simulation_seed", int)
    rep.add_argument(
        "--models", nargs="+", help="variant names (default: all; see `etecrm models`)"
    )
    rep.add_argument("--rois", nargs="+", help="ROI names (default: all of the dataset's)")
    rep.add_argument("--out", default="results", help="output folder (default ./results)")
    rep.add_argument(
        "--device", help="torch device, e.g. cpu or cuda (default: the GPU if there is one)"
    )
    rep.add_argument("--root", help="folder of downloaded real data (vim1)")
    _old_flag(rep, "--data-root", "root")
    rep.add_argument(
        "--cnn-weights",
        default="none",
        help="weights of alexnet_ridge's CNN: none (untrained, the default: no download), DEFAULT "
        "(ImageNet, downloaded once by torchvision) or a .pth file",
    )
    rep.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        help="paired bootstrap resamples over test images and seeds (default 2000, at least 100)",
    )
    rep.add_argument("--no-figures", action="store_true", help="write tables only")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.add_argument("--batched", action="store_true", help=BATCHED_HELP)

    sub.add_parser("models", help="list the model and ablation names")

    size = sub.add_parser(
        "datasize",
        help="accuracy against training-set size (ETECRM vs the Gabor model); resumable",
        description="Simulate one subject with many train images, fit the models on nested subsets "
        "of them (same test images), one results file each (reused on a rerun), then "
        "write OUT/curves.json (learning curves with intervals, crossings).",
    )
    size.add_argument("--profile", choices=["quick", "full"], default="quick")
    size.add_argument("--seeds", type=int, help="number of model seeds (default: the profile's)")
    size.add_argument(
        "--sizes", nargs="+", type=int, help="train-set sizes (default: the profile's)"
    )
    size.add_argument("--models", nargs="+", help="variant names (default: etecrm gwp_ridge)")
    size.add_argument("--rois", nargs="+", help="ROI names (default: the profile's)")
    size.add_argument("--subject", type=int, default=1)
    size.add_argument("--simulation-seed", type=int, default=0)
    size.add_argument("--ground-truth", choices=["cortex", "gabor", "cnn"], default="cortex")
    size.add_argument(
        "--out", default="results/data_size", help="output folder (default ./results/data_size)"
    )
    size.add_argument(
        "--device", help="torch device, e.g. cpu or cuda (default: the GPU if there is one)"
    )
    size.add_argument("--quiet", action="store_true", help="no progress bars")
    size.add_argument("--batched", action="store_true", help=BATCHED_HELP)

    _add_controls(sub)

    table = sub.add_parser(
        "table",
        help="rebuild the table and figures from the results files in a folder",
        description="Rebuild table.md/.csv/.json and the figures from OUT/results/*.npz "
        "(no data or training needed), e.g. after a GPU run without plotly.",
    )
    table.add_argument(
        "--out",
        default="results",
        help="the folder `etecrm reproduce --out` wrote (default ./results)",
    )
    table.add_argument("--no-figures", action="store_true", help="write tables only")
    table.add_argument(
        "--strip-predictions",
        action="store_true",
        help="first rewrite every results file without its test predictions (to commit results: "
        "tables, ensembles and comparisons are kept)",
    )

    data = sub.add_parser("data", help="simulate, download or describe a dataset")
    data_sub = data.add_subparsers(dest="action", required=True)
    sim = data_sub.add_parser("simulate", help="generate (and cache) a simulated subject")
    sim.add_argument("--subject", type=int, default=1)
    sim.add_argument("--profile", choices=["quick", "full"], default="quick")
    sim.add_argument("--simulation-seed", type=int, default=0, help="seed of the simulated cortex")
    _old_flag(sim, "--seed", "simulation_seed", int)
    sim.add_argument("--save", help="also write it to this .npz file")
    dl = data_sub.add_parser(
        "download",
        help="download a real dataset into the cache (or --root)",
        description="vim1 needs a free CRCNS account: set CRCNS_USERNAME and CRCNS_PASSWORD.",
    )
    dl.add_argument("--dataset", choices=["kay", "miyawaki", "vim1"], default="kay")
    dl.add_argument("--root", help="target folder (default: the cache folder)")
    desc = data_sub.add_parser("describe", help="print sizes, ROIs and voxel counts")
    desc.add_argument(
        "--dataset", default="sim", help="sim, vim1, kay, miyawaki or a dataset .npz file"
    )
    desc.add_argument("--subject", type=int, default=1)
    desc.add_argument("--profile", choices=["quick", "full"], default="quick")
    desc.add_argument("--simulation-seed", type=int, default=0, help="sim: its seed (default 0)")
    _old_flag(desc, "--seed", "simulation_seed", int)
    desc.add_argument("--root", help="folder of downloaded real data")
    return parser


def _cmd_reproduce(args) -> int:
    check_settings(
        args.out,
        args.device,
        args.bootstrap,
        args.seeds,
        args.first_seed,
        args.simulation_seed,
        args.dataset,
    )
    results = reproduce(
        dataset=args.dataset,
        subject=args.subject,
        profile=args.profile,
        n_seeds=args.seeds,
        first_seed=args.first_seed,
        simulation_seed=args.simulation_seed,
        models=_names(args.models, "--models"),
        rois=_names(args.rois, "--rois"),
        out=args.out,
        device=args.device,
        figures=not args.no_figures,
        root=args.root,
        cnn_weights=None if args.cnn_weights.lower() == "none" else args.cnn_weights,
        n_bootstrap=args.bootstrap,
        progress=not args.quiet,
        trainer=train_in_groups if args.batched else None,
    )
    print(f"done: {len(results)} results; table in {args.out}/table.md")
    if results:
        print_run_summary(args.out, results[0])
    return 0


def print_run_summary(out, first) -> None:
    """The answer on the terminal: median r per ROI and model (mean over seeds), and the verdicts
    of ETECRM against the two-step baseline chosen on validation data."""
    info = first.info
    run = load_run(out, first.dataset, info.get("profile"), first.subject, info.get("data_seed"))
    table = run.table(("median_r",), numeric=True).reset_index()
    table = table[~table["model"].str.contains("ensemble")]  # per-seed rows only
    wide = table.pivot_table(index="model", columns="roi", values="median_r", sort=False)
    print(f"\nmedian test r, mean over seeds:\n{wide.round(3).to_string()}")
    baseline = run.comparison_objects("baseline")
    if baseline:
        print()
        print(verdict_table(baseline, run.results, caption="ETECRM against the chosen baseline"))


def _cmd_datasize(args) -> int:
    changes = {
        "subject": args.subject,
        "simulation_seed": args.simulation_seed,
        "ground_truth": args.ground_truth,
    }
    for key, value in (
        ("seeds", args.seeds),
        ("sizes", args.sizes),
        ("models", _names(args.models, "--models")),
        ("rois", _names(args.rois, "--rois")),
    ):
        if value is not None:  # --seeds 0 is refused by the config, never read as "default"
            changes[key] = tuple(value) if isinstance(value, list) else value
    config = DataSizeConfig.for_profile(args.profile, **changes)
    trainer = train_in_groups if args.batched else None
    results = run_data_size(
        config, out=args.out, device=args.device, progress=not args.quiet, trainer=trainer
    )
    print(f"done: {len(results)} results; learning curves in {args.out}/curves.json")
    summary = read_curves(args.out)
    if summary and summary["crossings"]:  # one model alone has no crossings
        print(crossing_table(summary["crossings"]))
        print("\n".join(crossing_sentences(summary["crossings"])))
    return 0


def _cmd_controls(args) -> int:
    changes = {
        "ground_truth": args.ground_truth,
        "subject": args.subject,
        "simulation_seed": args.simulation_seed,
        "seeds": args.seeds,
        "rois": tuple(_names(args.rois, "--rois")) if args.rois else None,
        "train_repeats": args.train_repeats,
        "noise_free_scoring": args.noise_free_scoring,
    }
    config = ControlConfig.for_profile(args.profile, **changes)
    trainer = train_in_groups if args.batched else None
    table = run_controls(
        config, out=args.out, device=args.device, progress=not args.quiet, trainer=trainer
    )
    print(table.summary())
    print(markdown(table))
    print(f"written: {args.out}/controls_{args.ground_truth}_{args.profile}.json")
    return 0


def _cmd_table(args) -> int:
    if args.strip_predictions:
        print(
            f"stripped the test predictions from {strip_predictions(args.out)} files in {args.out}"
        )
    rebuild_outputs(args.out, figures=not args.no_figures)
    return 0


def _cmd_models(args) -> int:
    width = max(len(n) for n in VARIANTS)
    for name, variant in VARIANTS.items():
        mark = " " if name in DEFAULT_VARIANTS else "*"
        seeds = "once (deterministic)" if is_deterministic(name, cnn_weights=None) else "per seed"
        print(f"{name:<{width}} {mark} [{variant.family}, {seeds}] {variant.description}")
    if any(n not in DEFAULT_VARIANTS for n in VARIANTS):
        print("(* not run by default)")
    print(
        "seeds as with the default --cnn-weights none; alexnet_ridge with trained CNN "
        "weights runs once"
    )
    return 0


def _check_data_args(args) -> None:
    """Refuse bad ``etecrm data ...`` arguments before any work (a simulation or download)
    starts."""
    from pathlib import Path

    for flag in ("subject", "simulation_seed"):
        value = getattr(args, flag, None)
        if value is not None and value < (1 if flag == "subject" else 0):
            raise ValueError(
                f"--{flag.replace('_', '-')} must be "
                f"{'a positive' if flag == 'subject' else 'a non-negative'} "
                f"integer, got {value}"
            )
    save = getattr(args, "save", None)
    if save:
        path = Path(save).expanduser()
        if path.is_dir():
            raise ValueError(
                f"--save {save} is a folder; give a file name in it, e.g. --save {path / 'sim.npz'}"
            )
        if path.suffix != ".npz":
            raise ValueError(
                f"--save {save} must end in .npz (the dataset is written as one .npz file, which "
                f"`--dataset FILE.npz` reads back), e.g. --save {path.with_suffix('.npz')}"
            )
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise ValueError(
                f"--save {save}: {blocker} is a file, not a folder; choose another place to save"
            )
    root = getattr(args, "root", None)
    if root and Path(root).expanduser().exists() and not Path(root).expanduser().is_dir():
        raise ValueError(f"--root {root} is a file; give the folder the data are (or go) in")
    dataset = getattr(args, "dataset", None)
    if args.action == "describe" and dataset not in ("sim", "vim1", "kay", "miyawaki"):
        path = Path(dataset).expanduser()
        if path.suffix != ".npz":
            raise ValueError(
                f"--dataset {dataset!r} is neither a dataset name (sim, vim1, kay, miyawaki) nor a "
                ".npz file written by `etecrm data simulate --save` or etecrm_lib.data.save_npz"
            )
        if not path.is_file():
            raise FileNotFoundError(f"--dataset {dataset}: no such file")


def _cmd_data(args) -> int:
    _check_data_args(args)
    if args.action == "simulate":
        ds = data_module.simulate(args.subject, args.profile, seed=args.simulation_seed)
        print(ds.describe())
        if args.save:
            print(f"saved to {data_module.save_npz(ds, args.save)}")
    elif args.action == "download":
        if args.dataset == "kay":
            print(f"downloaded to {data_module.fetch_kay_images(args.root)}")
        elif args.dataset == "miyawaki":
            print(data_module.load_miyawaki(args.root).describe())
        else:  # credentials from CRCNS_USERNAME / CRCNS_PASSWORD, never from the command line
            for path in data_module.download_vim1(args.root):
                print(f"downloaded {path}")
    else:
        print(
            data_module.open_dataset(
                args.dataset, args.subject, args.profile, args.simulation_seed, args.root
            ).describe()
        )
    return 0


def _old_flag(parser, flag: str, dest: str, kind=str) -> None:
    """Accept ``flag``, an old spelling of the flag of ``dest`` (hidden from --help; noted)."""
    hidden = argparse.SUPPRESS
    parser.add_argument(flag, dest=f"old__{dest}", type=kind, default=None, help=hidden)


def _take_old_flags(args) -> None:
    """Move values given under old flags to their one name, with a deprecation warning."""
    for name, value in list(vars(args).items()):
        if name.startswith("old__") and value is not None:
            new = name[len("old__") :]
            flag = "--" + new.replace("_", "-")
            old = " or ".join(o for o, n in OLD_NAMES.items() if n == flag)
            message = f"{old} is deprecated and will be removed in the next release; use {flag}"
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            print(f"etecrm: note: {message}", file=sys.stderr)
            setattr(args, new, value)


EXPECTED_ERRORS = (
    ValueError,  # bad input, damaged files (storage.CorruptFileError), unsafe names
    KeyError,  # an unknown name (model, ROI, dataset)
    OSError,  # files and folders: missing, unwritable, full disk
    DownloadError,
    RuntimeError,  # e.g. pretrained weights that cannot be downloaded offline
    ArithmeticError,  # training that diverged (FloatingPointError), overflow
    MemoryError,
    ImportError,  # an optional package missing
)
"""Errors the ``etecrm`` command reports in one line (ETECRM_DEBUG=1 shows the traceback)."""
CLI_SPELLING = {
    "weights='DEFAULT'": "--cnn-weights DEFAULT",
    "weights='path/to/file.pth'": "--cnn-weights path/to/file.pth",
    "weights=None": "--cnn-weights none",
    "n_bootstrap": "--bootstrap",
    "first_seed": "--first-seed",
    "simulation_seed": "--simulation-seed",
    "data_seed": "--simulation-seed",
}
"""The library's spelling of an argument in an error message -> the command's flag."""


def one_line(err: BaseException) -> str:
    """An error as one readable line in the command's spelling (:data:`CLI_SPELLING`)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    lines = [line.strip().removeprefix("- ") for line in str(text).splitlines()]  # no bullets
    text = ""
    for line in filter(None, lines):  # lines that end a sentence run on; others get a "; "
        text += line if not text else (" " if text[-1] in ".;:," else "; ") + line
    text = text or type(err).__name__
    if isinstance(err, MemoryError):
        text = f"out of memory ({text}); use a smaller --profile or fewer models at once"
    for python, flag in CLI_SPELLING.items():
        text = text.replace(python, flag)
    return text


def _check_numbers(args) -> None:
    """Seeds from 0 to ``MAX_SEED`` and a device etecrm runs on, refused before any work starts
    (``reproduce`` checks its own settings: ``reproduce.check_settings``)."""
    if args.command == "reproduce":
        return
    for flag in ("seed", "first_seed", "data_seed", "simulation_seed"):
        value = getattr(args, flag, None)
        name = "--" + flag.replace("_", "-")
        if value is not None and value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value}")
        if value is not None and value > MAX_SEED:
            raise ValueError(f"{name} must be at most {MAX_SEED} (2**31 - 1), got {value}")
    count, first = getattr(args, "seeds", None), getattr(args, "first_seed", None) or 0
    if count is not None and count < 1:
        raise ValueError(f"--seeds must be at least 1, got {count}")
    if count is not None and first + count - 1 > MAX_SEED:
        raise ValueError(
            f"--first-seed {first} with --seeds {count} goes past the largest seed, {MAX_SEED}"
        )
    if getattr(args, "device", None) is not None:
        get_device(args.device)


def main(argv=None) -> int:
    """Entry point of the ``etecrm`` console script. Returns the exit status."""
    args = build_parser().parse_args(argv)
    _take_old_flags(args)
    commands = {
        "reproduce": _cmd_reproduce,
        "table": _cmd_table,
        "models": _cmd_models,
        "data": _cmd_data,
        "datasize": _cmd_datasize,
        "controls": _cmd_controls,
    }
    try:
        _check_numbers(args)
        return commands[args.command](args)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished results files are kept; run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
    except EXPECTED_ERRORS as err:
        if os.environ.get("ETECRM_DEBUG", "") not in ("", "0"):
            raise
        print(
            f"etecrm {args.command}: error: {one_line(err)} (ETECRM_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
