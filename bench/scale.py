"""Every stage of genzoo against the number of trials, locally and on an S3 store (moto).

Part one builds stores of ``--sizes`` trials (default 1,000, 10,000 and 100,000; a grid of
100 points times as many seeds) and an IMP store of ``--imp-models`` models (default 200,000:
21 levels per trial) with the store's own writers (``Store.write_epochs``, ``write_models``,
``write_measures``, ``write_table``, ``write_bytes``: real files, synthetic values): every
trial complete but the last 1% (pending), every completed model measured (4 families, 18
measures, 5 Hessian eigenvalues per model) but the models of 1% of the trials. Then it
compacts them as a launch and a measure job would and times, on each store:

- ``plan``: parse the sweep file and print its plan (``genzoo sweep plan``);
- ``status``: ``genzoo sweep status``;
- ``launch``: a launch's set-up, from ``driver.run`` to the moment it hands the pending trials
  to Tune (Ray and Tune are stubbed: the time to the first new trial less Ray's start);
- ``measure plan``: ``genzoo measure`` up to the moment it would connect to Ray;
- ``pandas epochs`` / ``pandas measures``: ``pd.read_parquet(<exp>/<table>)``;
  ``duckdb epochs``: ``read_parquet('<exp>/epochs/*.parquet')`` into Arrow; ``genzoo tables``:
  ``Store.epochs()``, ``models()``, ``measures()`` (every row exactly once);
- ``analysis``: ``genzoo analyze`` (tables with bootstrap intervals, figures, report);
- ``compaction``: what the launch and the measure job compact after building (not a stage a
  user waits for: it runs at the end of theirs).

``pandas epochs (uncompacted)`` reads the epochs folder before the compaction. A stage's
figure is the fastest of up to 3 runs that fit in 10 s (one run of the slower ones). Each
figure is printed for every size with its growth exponent between consecutive sizes,
log(t2/t1) / log(n2/n1) (1: linear). On S3 (``--s3-sizes``, default 1,000 and 10,000: a moto server on
loopback, filled with the compacted local store), the same stages print their requests too.

Part two (``--sweep 200,1000``, slow) runs real sweeps of that many tiny trials (digits, NiN
width 4, 32 images, one epoch) on the embedded Ray and prints the per-trial overhead in
slot-seconds: (wall × slots − Σ epoch seconds) / trials, from the launch's own record.

    .venv/bin/python bench/scale.py
    .venv/bin/python bench/scale.py --sizes 1000,10000 --imp-models 0 --s3-sizes 1000
    .venv/bin/python bench/scale.py --sizes 0 --imp-models 0 --s3-sizes 0 --sweep 200,1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from measures import registry  # noqa: E402
from sweep import compact, driver, launches, measure_job, trial  # noqa: E402
from sweep import config as sweep_config  # noqa: E402
from sweep.store import LONG_TABLE_SCHEMAS, Store  # noqa: E402
from sweep.trials_table import TrialsTable, status_text  # noqa: E402

# 100 grid points; the sizes are multiples of it (seeds are replicates, never an analysis axis).
GRID = {"width": [8, 16, 32, 64], "lr": [0.01, 0.02, 0.05, 0.1, 0.2],
        "weight_decay": [0.0, 0.0001, 0.0002, 0.0005, 0.001]}
FAMILIES = ("prunability", "norms", "training", "flatness")
IMP_FAMILIES = ("norms", "training")
EPOCHS = 10
IMP_LEVELS = 20
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class BenchError(ValueError):
    """A bad argument; one line naming it."""


class _Stop(Exception):
    """Raised where a stubbed stage would hand work to Ray."""


# ---------------------------------------------------------------------------------------------
# stores


def document(trials: int, imp: bool = False, experiment: Optional[str] = None) -> Dict[str, Any]:
    """A sweep file of ``trials`` trials (a multiple of the grid's 100 points)."""
    seeds = max(1, trials // 100)
    doc: Dict[str, Any] = {
        "experiment": experiment or (f"imp{trials}" if imp else f"zoo{trials}"),
        "dataset": "digits", "model": "nin",
        "train": {"epochs": EPOCHS if not imp else 2, "depth": 2, "batch_size": 32},
        "grid": GRID, "seeds": list(range(seeds)),
        "resources": {"cpus": 1},
        "measures": {"flatness": {"top_k": 5}},
    }
    if imp:
        doc["variants"] = [{"mode": "imp", "mode_settings": {"levels": IMP_LEVELS, "rewind_epoch": 0}}]
    return doc


def _model_ids(config) -> List[str]:
    if config.mode == "imp":
        return [f"level_{k:02d}" for k in range(IMP_LEVELS + 1)]
    return ["final"]


def build(storage: str, doc: Dict[str, Any], *, seed: int = 0, workers: int = 2,
          log: Callable[[str], None] = lambda line: None) -> Store:
    """Write a synthetic experiment with the store's own writers (module docstring), in
    ``workers`` processes (each trial's values depend on its index only). The writes skip
    fsync: a synthetic store need not survive a power loss, and fsync would be most of the
    build's time (bench/README.md)."""
    config = sweep_config.parse(doc)
    store = Store(storage, config.experiment)
    store.check_writable()
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    store.write_text(driver._provenance(config, now, now), "sweep.yaml")
    configs = config.trials()
    done = len(configs) - max(1, len(configs) // 100)  # the last 1% pending
    started = time.perf_counter()
    if workers > 1:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        with context.Pool(workers) as pool:
            pool.starmap(_build_share, [(storage, doc, seed, k, workers, done) for k in range(workers)])
    else:
        _build_share(storage, doc, seed, 0, 1, done)
    log(f"  {done:,} trials written in {time.perf_counter() - started:.0f} s")
    TrialsTable(store, configs).write()  # trials.parquet, as the driver derives it
    return store


def _build_share(storage: str, doc: Dict[str, Any], seed: int, share: int, shares: int, done: int) -> None:
    """Write the trials ``share``, ``share + shares``, ... of the first ``done``."""
    real_fsync = os.fsync
    os.fsync = lambda fd: None
    try:
        config = sweep_config.parse(doc)
        store = Store(storage, config.experiment)
        families = IMP_FAMILIES if config.base.mode == "imp" or config.variants else FAMILIES
        settings = measure_job.resolve_settings(list(families), config.measures)
        texts = {f: json.dumps({"settings": settings[f], "info": {}}, sort_keys=True, default=str) for f in families}
        names = {f: [m for m in registry.get(f).measures if not m.endswith("*")] for f in families}
        configs = config.trials()
        for index in range(share, done, shares):
            _build_trial(store, configs[index], index, np.random.default_rng([seed, index]), families, texts, names)
    finally:
        os.fsync = real_fsync


def _build_trial(store: Store, c, index: int, rng, families, texts, names) -> None:
    trial_id = c.trial_id
    epochs = trial.total_epochs(c)
    quality = rng.uniform(0.6, 0.95)
    gap = rng.uniform(0.0, 0.3)
    stamp = pd.Timestamp("2026-12-01", tz="UTC")
    store.write_epochs(trial_id, [{
        "epoch": e, "lr": c.lr, "minibatch_loss": 2.0 / e, "train_loss": 1.5 / e, "train_acc": quality * e / epochs,
        "test_loss": 1.7 / e, "test_acc": (quality - gap) * e / epochs, "seconds": 1.0 + 0.01 * e,
        "images_per_second": 1000.0, "status": "completed", "host": "bench", "device": "cpu",
        "finished_at": stamp + pd.Timedelta(seconds=index * epochs + e)} for e in range(1, epochs + 1)])
    models = _model_ids(c)
    rows, measured = [], []
    for level, model_id in enumerate(models):
        train_acc = min(1.0, quality + 0.01 * level * (1 - quality))
        test_acc = train_acc - gap * (1 + 0.02 * level) - rng.normal(0, 0.01)
        rows.append({"model_id": model_id, "epoch": epochs, "step": 10 * epochs, "weights": 10_000,
                     "sparsity": 1 - 0.8 ** level, "stability": None, "reached_target": None,
                     "train_loss": 1.5 / epochs, "train_acc": train_acc, "test_loss": 1.7 / epochs + gap,
                     "test_acc": test_acc})
        for family in families:
            for k, name in enumerate(names[family]):
                measured.append({"model_id": model_id, "family": family, "measure": name,
                                 "value": (train_acc - test_acc) * (1 + 0.1 * k) + rng.normal(0, 0.05),
                                 "seconds": 0.5, "status": "ok", "error": None, "settings": texts[family]})
    store.write_models(trial_id, rows)
    for name in ["init.pt", *(f"{m}.pt" for m in models)]:
        store.write_bytes(b"synthetic checkpoint", "checkpoints", trial_id, name)
    if index % 100 == 1:  # 1% of the trials' models left to measure
        return
    store.write_measures(trial_id, measured)
    if "flatness" in families:
        for model_id in models:
            frame = pd.DataFrame({"trial_id": trial_id, "model_id": model_id, "rank": range(1, 6),
                                  "eigenvalue": [10.0 / r for r in range(1, 6)]})
            store.write_table(frame, "hessian_eigenvalues", measure_job.table_file(trial_id, model_id),
                              schema=LONG_TABLE_SCHEMAS["hessian_eigenvalues"])


def compact_like_genzoo(store: Store) -> None:
    """What the end of a launch and of a measure job compact."""
    table = TrialsTable(store, sweep_config.read_resolved_config(store).trials())
    finished = {t for t, row in table.rows.items() if row.status in ("completed", "diverged")}
    compact.compact_trial_tables(store, finished)
    compact.compact_measure_tables(store, finished)


# ---------------------------------------------------------------------------------------------
# stages


class _Ray:
    @staticmethod
    def cluster_resources():
        return {"CPU": 2.0}


class _Tuner:
    def __init__(self, *args, **kwargs):
        pass

    def fit(self):
        raise _Stop()


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def stage_plan(store: Store, doc) -> None:
    driver.plan_text(sweep_config.parse(doc))


def stage_status(store: Store, doc) -> None:
    status_text(Store(store.storage, store.experiment))


def stage_launch(store: Store, doc) -> None:
    from ray import tune

    with _patched(driver, "connect_ray", lambda address=None: _Ray()), _patched(tune, "Tuner", _Tuner):
        try:
            driver.run(sweep_config.parse(doc), storage=store.storage, out=lambda line: None)
        except _Stop:
            return
    raise RuntimeError("the launch found nothing to train")


def stage_measure_plan(store: Store, doc) -> None:
    import sweep.cluster

    def stop(address=None):
        raise _Stop()

    with _patched(sweep.cluster, "connect_ray", stop):
        try:
            measure_job.run(store.experiment, storage=store.storage, measures=",".join(_families(store)),
                            out=lambda line: None)
        except _Stop:
            return
    raise RuntimeError("the measure job found nothing to compute")


def _families(store: Store) -> List[str]:
    return list(IMP_FAMILIES if store.experiment.startswith("imp") else FAMILIES)


def _read_pandas(table: str):
    def stage(store: Store, doc) -> None:
        if store.local_path() is not None:
            pd.read_parquet(store.path(table))
        else:
            pd.read_parquet(store.path(table), filesystem=store.fs)
    return stage


def stage_duckdb_epochs(store: Store, doc) -> None:
    import duckdb

    duckdb.sql(f"SELECT * FROM read_parquet('{store.path('epochs')}/*.parquet')").arrow()


def stage_genzoo_tables(store: Store, doc) -> None:
    fresh = Store(store.storage, store.experiment)
    fresh.epochs(), fresh.models(), fresh.measures()


def stage_analysis(store: Store, doc) -> None:
    from sweep import analyze

    analyze.run(store.experiment, storage=store.storage, include_partial=True)  # 1% of the models unmeasured


LOCAL_STAGES = {
    "plan": stage_plan, "status": stage_status, "launch": stage_launch, "measure plan": stage_measure_plan,
    "pandas epochs": _read_pandas("epochs"), "pandas measures": _read_pandas("measures"),
    "duckdb epochs": stage_duckdb_epochs, "genzoo tables": stage_genzoo_tables, "analysis": stage_analysis,
}
S3_STAGES = ("status", "launch", "measure plan", "pandas epochs", "genzoo tables")


# ---------------------------------------------------------------------------------------------
# S3: moto on loopback, counting requests


class CountingMotoServer:
    """moto's S3 server on loopback that counts the requests it answers."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Counting(ThreadedMotoServer):
            def _server_entry(self):
                from moto.server import DomainDispatcherApplication, create_backend_app
                from werkzeug.serving import WSGIRequestHandler, make_server

                app = DomainDispatcherApplication(create_backend_app)

                def counted(environ, start_response):
                    with server._lock:
                        server.requests += 1
                    return app(environ, start_response)

                class Quiet(WSGIRequestHandler):
                    def log(self, *args, **kwargs):
                        pass

                self._server = make_server(self._ip_address, self._port, counted, True, request_handler=Quiet)
                self._server_ready_event.set()
                self._server.serve_forever()

        self._server = Counting(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self):
        for key, value in CREDENTIALS.items():
            os.environ.setdefault(key, value)
        self._server.start()
        import pyarrow.fs as pafs

        self.fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", region="us-east-1",
                                    allow_bucket_creation=True)
        self.fs.create_dir("bench-bucket")
        return self

    def __exit__(self, *exc):
        self._server.stop()

    def uri(self, prefix: str = "zoo") -> str:
        return f"s3://bench-bucket/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def upload(self, store: Store, prefix: str = "zoo") -> Store:
        """The local ``store``'s files, copied into the bucket (then opened as a Store)."""
        import pyarrow.fs as pafs

        pafs.copy_files(store.root, f"bench-bucket/{prefix}/{store.experiment}",
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs, use_threads=True)
        return Store(self.uri(prefix), store.experiment)

    def count(self, function: Callable[[], Any]):
        """(seconds, requests) of ``function()``."""
        before = self.requests
        started = time.perf_counter()
        function()
        return time.perf_counter() - started, self.requests - before


# ---------------------------------------------------------------------------------------------
# part two: a real sweep of tiny trials


def sweep_overhead(trials: int, root: str) -> Dict[str, float]:
    """Per-trial orchestration overhead of a real sweep of ``trials`` tiny trials on the
    embedded Ray: (wall × slots − Σ epoch seconds) / trials, from the launch's record."""
    doc = {"experiment": f"tiny{trials}", "dataset": "digits", "model": "nin",
           "train": {"epochs": 1, "width": 4, "depth": 1, "train_size": 32, "batch_size": 32, "eval_train_subset": 32},
           "seeds": list(range(trials)), "resources": {"cpus": 1}}
    config = sweep_config.parse(doc)
    started = time.perf_counter()
    counts = driver.run(config, storage=root, out=lambda line: None)
    total = time.perf_counter() - started
    store = Store(root, config.experiment)
    launch = launches.last_launch(store)
    overhead = (launch["wall_seconds"] * launch["slots"] - launch["training_seconds"]) / trials
    return {"trials": trials, "completed": counts.get("completed", 0), "slots": launch["slots"],
            "wall_seconds": launch["wall_seconds"], "training_seconds": launch["training_seconds"],
            "overhead_slot_seconds": overhead, "command_seconds": total}


# ---------------------------------------------------------------------------------------------
# report


def exponent(n1: float, t1: float, n2: float, t2: float) -> float:
    if min(n1, n2, t1, t2) <= 0 or n1 == n2:
        return math.nan
    return math.log(t2 / t1) / math.log(n2 / n1)


def table(rows: Sequence[Dict[str, Any]], key: str = "seconds", unit: str = "s") -> str:
    """One line per stage: its figure at every size and the growth exponents between them."""
    sizes = sorted({r["trials"] for r in rows})
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    head = ["stage", *(f"{n:,} trials" for n in sizes), *(f"exp. {a:,}→{b:,}" for a, b in zip(sizes, sizes[1:]))]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for stage in stages:
        by_size = {r["trials"]: r[key] for r in rows if r["stage"] == stage and r.get(key) is not None}
        cells = [_fmt(by_size.get(n), unit) for n in sizes]
        exps = [exponent(a, by_size.get(a, 0), b, by_size.get(b, 0)) if a in by_size and b in by_size else math.nan
                for a, b in zip(sizes, sizes[1:])]
        cells += ["–" if math.isnan(e) else f"{e:.2f}" for e in exps]
        lines.append("| " + " | ".join([stage, *cells]) + " |")
    return "\n".join(lines)


def _fmt(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return f"{int(value):,}"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="trials per store (multiples of 100; 0: none)")
    parser.add_argument("--imp-models", type=int, default=200_000, help="models of the IMP store (0: none)")
    parser.add_argument("--s3-sizes", default="1000,10000", help="sizes also timed on a moto S3 store (0: none)")
    parser.add_argument("--stages", default=",".join(LOCAL_STAGES), help="comma-separated stages to time")
    parser.add_argument("--sweep", default="", help="part two: real sweeps of this many tiny trials (slow)")
    parser.add_argument("--root", help="build the stores here (default: a temporary folder, removed)")
    parser.add_argument("--workers", type=int, default=2, help="processes that write a store (default 2)")
    parser.add_argument("--json", help="also write every row to this file")
    args = parser.parse_args(argv)

    def sizes(name: str, text: str, multiple: int) -> List[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()] if text.strip() else []
        except ValueError:
            raise BenchError(f"{name}: got {text!r}, allowed: comma-separated numbers of trials") from None
        values = [v for v in values if v != 0]
        if any(v < multiple or v % multiple for v in values):
            raise BenchError(f"{name}: got {text!r}, allowed: multiples of {multiple} (or 0)")
        return values

    args.sizes = sizes("--sizes", args.sizes, 100)
    args.s3_sizes = sizes("--s3-sizes", args.s3_sizes, 100)
    args.sweep = sizes("--sweep", args.sweep, 1)
    unknown = [s for s in args.s3_sizes if s not in args.sizes]
    if unknown:
        raise BenchError(f"--s3-sizes: {unknown[0]} is not one of --sizes")
    if args.imp_models < 0 or 0 < args.imp_models < (IMP_LEVELS + 1) * 100:
        raise BenchError(f"--imp-models: got {args.imp_models}, allowed: 0 or at least {(IMP_LEVELS + 1) * 100}")
    if args.workers < 1:
        raise BenchError(f"--workers: got {args.workers}, allowed: at least 1")
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in args.stages if s not in LOCAL_STAGES]
    if bad:
        raise BenchError(f"--stages: unknown stage {bad[0]!r}, allowed: {', '.join(LOCAL_STAGES)}")
    return args


def _time(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _best(function: Callable[[], Any], repeat: int = 3, budget: float = 10.0) -> float:
    """The fastest of up to ``repeat`` runs, while they take less than ``budget`` seconds in
    all: a stage of a few seconds or less varies by tens of percent under the load of a shared
    machine, and an exponent between two such figures with it."""
    times = [_time(function)]
    while len(times) < repeat and sum(times) < budget:
        times.append(_time(function))
    return min(times)


def run_stores(args, root: str, out=print) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    jobs = [(n, False) for n in args.sizes]
    if args.imp_models:
        jobs.append((args.imp_models // (IMP_LEVELS + 1) // 100 * 100, True))
    s3 = CountingMotoServer().__enter__() if args.s3_sizes else None
    try:
        for trials, imp in jobs:
            doc = document(trials, imp)
            label = f"IMP, {trials * (IMP_LEVELS + 1):,} models" if imp else f"{trials:,} trials"
            storage = os.path.join(root, doc["experiment"])
            build_seconds = _time(lambda: build(storage, doc, workers=args.workers, log=out))
            store = Store(storage, doc["experiment"])
            out(f"[{label}] built in {build_seconds:.0f} s")

            def record(stage: str, seconds: float, requests: Optional[int] = None, where: str = "local") -> None:
                row = {"trials": trials, "models": trials * (IMP_LEVELS + 1 if imp else 1), "imp": imp,
                       "stage": stage, "seconds": seconds, "requests": requests, "where": where}
                rows.append(row)
                out(f"[{label}] {where} {stage}: {seconds:.3f} s" + (f", {requests:,} requests" if requests else ""))

            if "pandas epochs" in args.stages:
                record("pandas epochs (uncompacted)", _time(lambda: _read_pandas("epochs")(store, doc)))
            record("compaction", _time(lambda: compact_like_genzoo(store)))
            for name in args.stages:
                record(name, _best(lambda: LOCAL_STAGES[name](store, doc)))
            if s3 is not None and not imp and trials in args.s3_sizes:
                remote = s3.upload(store, prefix=f"s3{trials}")
                for name in S3_STAGES:
                    if name in args.stages:
                        seconds, requests = s3.count(lambda: LOCAL_STAGES[name](remote, doc))
                        record(name, seconds, requests, where="s3")
            if not args.root:
                shutil.rmtree(storage, ignore_errors=True)
    finally:
        if s3 is not None:
            s3.__exit__()
    return rows


def main(argv: Sequence[str] = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except BenchError as error:
        print(f"scale: error: {error}", file=sys.stderr)
        return 2
    import multiprocessing

    print(f"{multiprocessing.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    root = args.root or tempfile.mkdtemp(prefix="genzoo-scale-")
    rows: List[Dict[str, Any]] = []
    try:
        rows = run_stores(args, root, out=lambda line: print(line, flush=True))
        plain = [r for r in rows if not r["imp"]]
        if plain:
            print("\nLocal store, seconds (growth exponent: 1 is linear):")
            print(table([r for r in plain if r["where"] == "local"]))
            remote = [r for r in plain if r["where"] == "s3"]
            if remote:
                print("\nS3 store (moto on loopback), seconds:")
                print(table(remote))
                print("\nS3 store, requests:")
                print(table(remote, key="requests", unit="requests"))
        imp = [r for r in rows if r["imp"]]
        if imp:
            print(f"\nIMP store ({imp[0]['models']:,} models, {imp[0]['trials']:,} trials), seconds:")
            for r in imp:
                print(f"| {r['stage']} | {_fmt(r['seconds'], 's')} |")
        for trials in args.sweep:
            result = sweep_overhead(trials, os.path.join(root, f"sweep{trials}"))
            rows.append({"stage": "sweep", **result})
            print(f"sweep of {trials:,} tiny trials: {result['overhead_slot_seconds']:.3f} slot-seconds of overhead "
                  f"per trial ({result['wall_seconds']:.0f} s wall x {result['slots']} slots, "
                  f"{result['training_seconds']:.0f} s training)", flush=True)
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
