"""The ``genzoo`` command line.

    genzoo data download DATASET [--root DIR]   cifar10, cifar100, mnist (digits ships with scikit-learn)
    genzoo train [FIELD=VALUE ...]              one model, per-epoch table (no Ray)
    genzoo sweep plan PRESET|FILE [KEY=VALUE ...]
    genzoo sweep run PRESET|FILE [KEY=VALUE ...] [--storage S] [--address A] [--gpus-per-trial F] [--autoscale]
                                 [--log tensorboard|mlflow|wandb ...] [--tensorboard-dir DIR]
    genzoo sweep resume EXPERIMENT [--storage S] [--address A] [--autoscale] [--log ...] [--tensorboard-dir DIR]
    genzoo sweep status EXPERIMENT [--storage S]
    genzoo measure EXPERIMENT [--measures a,b] [--set FAMILY.SETTING=VALUE ...] [--gpus-per-task F]
                              [--force] [--autoscale] [--storage S]
    genzoo analyze EXPERIMENT [--target gap|test_loss|test_error] [--include-partial] [--storage S]
    genzoo compact EXPERIMENT [--storage S]    merge finished trials' table files into parts
    genzoo import MANIFEST.csv|MANIFEST.parquet|TUNE_DIR [--mapping MAP.yaml] [--experiment NAME] [--storage S]
                  [--data-root DIR] [--device cpu|cuda]   an existing zoo as an experiment (docs/import.md)
    genzoo demo [--storage S]                   sweep run + measure + analyze of the demo preset

Bad input (a config field, a missing dataset, an unwritable store) is one line on stderr and
exit code 2; a sweep with failed trials exits 1.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import List, Optional

EXIT_BAD_INPUT = 2


def _user_errors() -> tuple:
    from sweep.config import SweepConfigError
    from sweep.store import StoreError
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError
    from trainers.data import DatasetError
    from trainers.models import ModelError
    from trainers.yamlio import YamlError

    errors = [SweepConfigError, StoreError, CheckpointError, ConfigError, DatasetError, ModelError, YamlError]
    try:
        from sweep.importer import ZooImportError
        errors.append(ZooImportError)
    except ImportError:
        pass
    try:
        from sweep.measure_job import MeasureJobError
        errors.append(MeasureJobError)
    except ImportError:
        pass
    try:
        from analysis.errors import AnalysisError
        errors.append(AnalysisError)
    except ImportError:
        pass
    return tuple(errors)


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="results store: a path or URI (default: $GENZOO_STORAGE, else ./results)")


def _add_autoscale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--autoscale", action="store_true",
                        help="the cluster adds nodes on demand: start even if it lacks the requested GPUs or CPUs now")


def build_parser() -> argparse.ArgumentParser:
    from trainers.data import registry as datasets  # torch-free: the datasets' specs

    parser = argparse.ArgumentParser(prog="genzoo", description="Train model zoos, measure them, correlate.")
    commands = parser.add_subparsers(dest="command", required=True)

    data_cmd = commands.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    download = data_cmd.add_parser("download", help="download a dataset (CIFAR and MNIST with torchvision's "
                                   "checksummed downloader; digits ships with scikit-learn: prints its file)")
    download.add_argument("name", choices=[n for n in datasets.names() if datasets.get(n).download],
                          help="the dataset to download")
    download.add_argument("--root", help="data root (default: $GENZOO_DATA, else ~/.cache/genzoo)")

    train = commands.add_parser("train", help="train one model without Ray and print its per-epoch table")
    train.add_argument("overrides", nargs="*", metavar="FIELD=VALUE", help="TrainConfig fields, e.g. width=32 epochs=5")
    train.add_argument("--data-root", help="dataset files root (default: $GENZOO_DATA, else ~/.cache/genzoo)")
    train.add_argument("--run-dir", help="write checkpoints here (and resume from them)")

    sweep = commands.add_parser("sweep", help="plan, run, resume or inspect a sweep").add_subparsers(
        dest="sweep_command", required=True)
    plan = sweep.add_parser("plan", help="print the trials and resources of a sweep without starting it")
    run = sweep.add_parser("run", help="train every trial of a sweep on Ray Tune")
    for sub in (plan, run):
        sub.add_argument("sweep", metavar="PRESET|FILE", help="a preset name (sweep/presets) or a sweep file")
        sub.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                         help="set a field of the sweep file, e.g. train.epochs=2 grid.width=[8,16] seeds=[0,1] "
                              "measures.flatness.subset=128 (values read as YAML)")
    resume = sweep.add_parser("resume", help="continue an interrupted sweep")
    resume.add_argument("experiment", help="the experiment's name in the store")
    for sub in (run, resume):
        _add_storage(sub)
        sub.add_argument("--address", help="Ray cluster address (auto, ray://host:port); default: embedded local Ray")
        sub.add_argument("--data-root", help="dataset files root on every node (default: $GENZOO_DATA, else ~/.cache/genzoo)")
        _add_autoscale(sub)
    run.add_argument("--gpus-per-trial", type=float, help="override resources.gpus (a fraction of one GPU)")
    for sub in (run, resume):
        sub.add_argument("--measure", action="store_true",
                         help="also measure each model as soon as its trial completes (one measure task at a time "
                              "beside the trials; the same rows as `genzoo measure`)")
        sub.add_argument("--log", action="append", metavar="TRACKER",
                         help="also log each trial's hyperparameters and per-epoch metrics to tensorboard, mlflow or "
                              "wandb (repeatable or comma-separated; docs/trackers.md)")
        sub.add_argument("--tensorboard-dir", metavar="DIR",
                         help="with --log tensorboard: write event files to DIR/EXPERIMENT/TRIAL (default: each "
                              "Tune trial's folder, STORAGE/EXPERIMENT/_tune/run-N/TRIAL)")
    status = sweep.add_parser("status", help="trial counts, epochs done, failed trials")
    status.add_argument("experiment", help="the experiment's name in the store")
    _add_storage(status)

    from measures import registry  # torch-free: the families' specs, for the help text

    measure = commands.add_parser(
        "measure", help="compute the generalization measures of an experiment",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="measure families, their settings (--set FAMILY.SETTING=VALUE) and defaults:\n\n"
               + registry.help_text())
    measure.add_argument("experiment", help="the experiment's name in the store")
    measure.add_argument("--measures", help="comma-separated measure families (default: all that apply)")
    measure.add_argument("--set", dest="overrides", action="append", default=[], metavar="FAMILY.SETTING=VALUE",
                         help="override a measure setting, e.g. --set flatness.subset=500 (repeatable)")
    measure.add_argument("--gpus-per-task", type=float, default=None,
                         help="fraction of one GPU per model's task (default: 0.25 when the cluster has a GPU, else 0)")
    measure.add_argument("--force", action="store_true", help="recompute (trial, measure) pairs already stored")
    measure.add_argument("--follow", action="store_true",
                         help="measure each model as soon as its trial completes, until every trial has finished "
                              "(beside a running sweep, on the same cluster)")
    measure.add_argument("--in-flight", type=int, default=1,
                         help="with --follow: measure tasks at once (default 1, so training keeps the other CPUs)")
    measure.add_argument("--address", help="Ray cluster address (auto, ray://host:port); default: embedded local Ray")
    measure.add_argument("--data-root", help="dataset files root on every node (default: $GENZOO_DATA, else ~/.cache/genzoo)")
    _add_autoscale(measure)
    _add_storage(measure)

    analyze = commands.add_parser("analyze", help="correlation tables, figures and report of an experiment")
    analyze.add_argument("experiment", help="the experiment's name in the store")
    # analysis.options.TARGETS (tests/analysis/test_options.py): not imported, every command would load it.
    analyze.add_argument("--target", default=None, choices=["gap", "test_loss", "test_error"],
                         help="the generalization quantity the measures are ranked against "
                              "(default: the sweep file's analysis.target, else gap)")
    analyze.add_argument("--include-partial", action="store_true",
                         help="keep in Tables 1-3 the measures computed on fewer models than the zoo holds")
    _add_storage(analyze)

    compact = commands.add_parser("compact", help="merge the finished trials' per-trial table files into a few "
                                  "Parquet parts (docs/store.md); not while a sweep or measure job of it runs")
    compact.add_argument("experiment", help="the experiment's name in the store")
    _add_storage(compact)

    zoo = commands.add_parser("import", help="an existing zoo (a manifest of checkpoints, or a Ray Tune experiment "
                              "folder) as an experiment that measure and analyze run on (docs/import.md)")
    zoo.add_argument("source", metavar="MANIFEST|TUNE_DIR",
                     help="a .csv or .parquet manifest (one row per model), or a Ray Tune experiment folder")
    zoo.add_argument("--mapping", metavar="FILE",
                     help="Ray Tune folder: YAML mapping its parameter and metric names to genzoo's")
    zoo.add_argument("--experiment", help="the experiment's name in the store (default: the source's name)")
    zoo.add_argument("--data-root", help="dataset files root, for the metrics computed on import "
                     "(default: $GENZOO_DATA, else ~/.cache/genzoo)")
    zoo.add_argument("--device", help="where the metrics not given are computed (default: cuda when available)")
    _add_storage(zoo)

    demo = commands.add_parser("demo", help="sweep run + measure + analyze of the demo preset on local Ray")
    _add_storage(demo)
    demo.add_argument("--data-root", help="dataset files root (default: $GENZOO_DATA, else ~/.cache/genzoo)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from trainers.allocator import keep_freed_memory

    keep_freed_memory()  # for the commands that train or measure in this process (genzoo train)
    try:
        return _dispatch(args)
    except _user_errors() as exc:
        print(f"genzoo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        from sweep import scratch
        from sweep.cluster import stop_ray

        stop_ray()  # the trials and tasks end with it; their partial epoch or model is not committed
        scratch.reap(wait_for_younger=10.0)
        print(f"genzoo: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return 130
    except OSError as exc:
        from sweep.store import resolve_storage

        storage = resolve_storage(getattr(args, "storage", None))
        if exc.errno == errno.ENOSPC:  # a full disk outside the store's own writes (Tune's files)
            print(f"genzoo: error: storage: no space left on device writing {exc.filename or storage}; free space, "
                  f"then {_again(args)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if "://" not in storage:
            raise
        # A remote store that stopped answering mid-run (its opening is checked with a timeout).
        print(f"genzoo: error: storage: {storage} failed ({(str(exc).strip().splitlines() or ['?'])[0][:300]}); "
              "when it answers again, run the command again (`genzoo sweep resume` for a sweep)", file=sys.stderr)
        return EXIT_BAD_INPUT


def _after_interrupt(args: argparse.Namespace) -> str:
    """What a user stopped with Ctrl-C runs to continue: the store keeps every commit."""
    from sweep.store import resolve_storage

    storage = resolve_storage(getattr(args, "storage", None))
    if args.command == "sweep" and args.sweep_command in ("run", "resume") and getattr(args, "experiment", None):
        return (f"every committed epoch is kept; continue with `genzoo sweep resume {args.experiment} "
                f"--storage {storage}`")
    if args.command == "measure":
        return f"every stored model is kept; continue with `genzoo measure {args.experiment} --storage {storage}`"
    if args.command == "demo":
        return f"what is done is kept; continue with `genzoo demo --storage {storage}`"
    return "nothing was committed after the last commit point"


def _again(args: argparse.Namespace) -> str:
    """How to continue the command ``args`` after its store failed (it resumes where it stopped)."""
    if args.command == "sweep" and args.sweep_command in ("run", "resume"):
        experiment = getattr(args, "experiment", None) or "EXPERIMENT"
        return f"`genzoo sweep resume {experiment}`"
    if args.command == "measure":
        return "run `genzoo measure` again (it computes what is missing)"
    return "run the command again"


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "data":
        from trainers.data import download

        path = download(args.name, args.root)
        print(f"{args.name} is ready in {path}")
        return 0
    if args.command == "train":
        return _train(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "measure" and args.follow:
        from sweep import measure_follow

        if args.force:
            raise measure_follow.measure_job.MeasureJobError("--force: not with --follow (a follower computes "
                                                             "only what is missing)")
        summary = measure_follow.follow(args.experiment, storage=args.storage, measures=args.measures,
                                        overrides=args.overrides, address=args.address, data_root=args.data_root,
                                        gpus_per_task=args.gpus_per_task, in_flight=args.in_flight)
        return 0 if summary.get("error", 0) == 0 else 1
    if args.command == "measure":
        return _measure(args.experiment, storage=args.storage, measures=args.measures,
                        gpus_per_task=args.gpus_per_task, force=args.force, address=args.address,
                        data_root=args.data_root, autoscale=args.autoscale, overrides=args.overrides)
    if args.command == "analyze":
        return _analyze(args.experiment, storage=args.storage, target=args.target,
                        include_partial=args.include_partial)
    if args.command == "compact":
        from sweep import compact

        compact.run(args.experiment, storage=args.storage)
        return 0
    if args.command == "import":
        from sweep import importer

        importer.run(args.source, experiment=args.experiment, storage=args.storage, mapping=args.mapping,
                     data_root=args.data_root, device=args.device)
        return 0
    if args.command == "demo":
        return _demo(args)
    raise AssertionError(args.command)


def _train(args: argparse.Namespace) -> int:
    from trainers import yamlio
    from trainers.config import ConfigError, TrainConfig
    from trainers.train import format_table, train

    values = {}
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"{item}: expected FIELD=VALUE")
        values[key] = yamlio.parse_value(raw, source=key)
    config = TrainConfig.from_dict(values)
    config.check_schedule()
    print(f"training {config.trial_id} on {config.dataset}", flush=True)
    result = train(config, run_dir=args.run_dir, data_root=args.data_root,
                   log=lambda line: print(line, flush=True))
    print(format_table(result.records))
    print(f"status: {result.status}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from sweep import config as sweep_config
    from sweep import driver
    from sweep.store import Store
    from sweep.trials_table import status_text

    if args.sweep_command == "plan":
        print(driver.plan_text(sweep_config.load(args.sweep, args.overrides)))
        return 0
    if args.sweep_command == "status":
        print(status_text(Store(args.storage, args.experiment)))
        return 0
    from sweep import trackers

    log = trackers.parse(args.log, args.tensorboard_dir)
    if args.sweep_command == "run":
        config = sweep_config.load(args.sweep, args.overrides)
        args.experiment = config.experiment  # for the resume command after Ctrl-C
        args.storage = config.storage if args.storage is None else args.storage
        if args.gpus_per_trial is not None:
            config = sweep_config.with_gpus(config, args.gpus_per_trial)
        counts = driver.run(config, storage=args.storage, address=args.address, data_root=args.data_root,
                            autoscale=args.autoscale, measure=args.measure, log=log)
    else:
        counts = driver.resume(args.experiment, storage=args.storage, address=args.address,
                               data_root=args.data_root, autoscale=args.autoscale, measure=args.measure, log=log)
    return driver.main_exit_code(counts)


def _measure(experiment: str, **kwargs) -> int:
    from sweep import measure_job

    summary = measure_job.run(experiment, **kwargs)
    return 0 if summary.get("error", 0) == 0 else 1


def _analyze(experiment: str, *, storage: Optional[str], target: Optional[str], include_partial: bool = False) -> int:
    from sweep import analyze

    result = analyze.run(experiment, storage=storage, target=target, include_partial=include_partial)
    print(result.table1_text)
    if result.against_paper is not None:
        counts = result.against_paper["verdict"].value_counts()
        print("against the paper: " + ", ".join(f"{int(counts.get(v, 0))} {v}"
                                               for v in ("reproduced", "contradicted", "inconclusive"))
              + f" of {len(result.against_paper)} claims (report section \"Against the paper\")")
    print(f"report: {result.report_path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Sweep run, measures and analysis of the demo preset; each stage's wall time is printed
    at the end. ``args.overrides`` (optional, for tests: ``grid.train_size=[100,400]``) are
    applied to the preset like those of ``genzoo sweep plan``."""
    import time

    from sweep import config as sweep_config
    from sweep import driver

    from sweep.store import Store
    from trainers.train import format_table

    times = []
    started = time.perf_counter()
    config = sweep_config.load("demo", getattr(args, "overrides", None) or ())
    experiment = config.experiment
    counts = driver.run(config, storage=args.storage, data_root=args.data_root)
    times.append(("sweep", time.perf_counter() - started))
    if driver.main_exit_code(counts) != 0:
        print(f"genzoo demo: some trials failed; see `genzoo sweep status {experiment}`", file=sys.stderr)
        return 1
    store = Store(args.storage, experiment)
    trials = store.trials()
    best = trials.sort_values(["test_acc", "trial_id"], ascending=[False, True]).iloc[0]
    settings = ", ".join(f"{name} {best[name]}" for name, values in config.axes if len(values) > 1)
    print(f"\nper-epoch table of the most accurate model, {best.trial_id} ({settings}):")
    print(format_table(store.epochs(best.trial_id).to_dict("records")) + "\n")
    mark = time.perf_counter()
    code = _measure(experiment, storage=args.storage, measures=None, gpus_per_task=None, force=False,
                    address=None, data_root=args.data_root)
    times.append(("measures", time.perf_counter() - mark))
    if code != 0:
        print("genzoo demo: some measures failed; their rows say why (status == 'error')", file=sys.stderr)
    mark = time.perf_counter()
    code = _analyze(experiment, storage=args.storage, target=None) or code
    times.append(("analysis", time.perf_counter() - mark))
    gap = trials["train_acc"].astype(float) - trials["test_acc"].astype(float)
    print(f"gap of the {len(trials)} models: {gap.min():.3f} to {gap.max():.3f} (range {gap.max() - gap.min():.3f}); "
          f"median train accuracy {trials['train_acc'].astype(float).median():.3f}")
    times.append(("total", time.perf_counter() - started))
    print("stage times: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times))
    return code


if __name__ == "__main__":
    sys.exit(main())
