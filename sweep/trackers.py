"""Experiment trackers: ``genzoo sweep run|resume --log tensorboard|mlflow|wandb``.

Each tracker is one of Ray Tune's own logger callbacks (``TBXLoggerCallback``,
``MLflowLoggerCallback``, ``WandbLoggerCallback``), subclassed so that what it logs is the
trial's, not Tune's:

- one tracker run per Tune trial, named after it (the genzoo trial id, or ``pack<K>-<first id>``);
- its hyperparameters: the trial's train fields, flat (:func:`hyperparameters`), not Tune's
  nested param space (``{"trial": {"configs": [...]}, "storage": ..., ...}``);
- its metrics, at step = epoch (:func:`epoch_metrics`): epoch, train_loss, train_acc,
  test_loss, test_acc, minibatch_loss, epoch_seconds. A packed Tune trial (``resources.pack``)
  reports each of its models every epoch: their metrics are logged as ``<trial_id>/<metric>``;
  its hyperparameters are the fields its models share, and, for a field they do not share
  (the seed, say), the models' values in pack order, comma-separated (``trial_id`` too).

Where each writes (docs/trackers.md): TensorBoard into each Tune trial's folder
(``<storage>/<experiment>/_tune/run-<n>/<trial>/``) or ``<tensorboard_dir>/<experiment>/<trial>/``;
MLflow to ``$MLFLOW_TRACKING_URI``, else a file store ``<storage>/<experiment>/_mlruns`` (the
``_`` keeps it out of the store's table folders, like ``_tune``),
experiment = the genzoo experiment; W&B to project = the genzoo experiment, files in the Tune
trial's folder (or ``$WANDB_DIR``), ``WANDB_*`` variables (``WANDB_MODE=offline``) passed on to
its logging actor.

What a launch needs is checked by :func:`check` before the store is touched: a missing
package is one line naming the flag and the pip command.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from sweep.config import SweepConfigError
from sweep.launches import TUNE_DIR

TRACKERS = ("tensorboard", "mlflow", "wandb")
# tracker -> (the module its callback imports, the pip package that provides it)
PACKAGES = {"tensorboard": ("tensorboardX", "tensorboardX"), "mlflow": ("mlflow", "mlflow-skinny"),
            "wandb": ("wandb", "wandb")}
# The numeric per-epoch metrics the driver reports to Tune (sweep.driver._metrics) that are logged.
# MLflow's default file store, in the experiment's folder.
MLRUNS = "_mlruns"
METRICS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "minibatch_loss", "epoch_seconds")


@dataclass(frozen=True)
class Trackers:
    """The trackers a launch logs to (``--log``) and where TensorBoard writes (``--tensorboard-dir``)."""

    names: Tuple[str, ...] = ()
    tensorboard_dir: Optional[str] = None


def parse(values: Optional[Iterable[str]], tensorboard_dir: Optional[str] = None) -> Trackers:
    """``--log`` values (repeatable, each may be comma-separated) -> :class:`Trackers`."""
    names: List[str] = []
    for value in values or ():
        for name in value.split(","):
            name = name.strip()
            if name not in TRACKERS:
                raise SweepConfigError(f"--log: got {name!r}, allowed: {', '.join(TRACKERS)}")
            if name not in names:
                names.append(name)
    if tensorboard_dir is not None:
        if "tensorboard" not in names:
            raise SweepConfigError("--tensorboard-dir: only with --log tensorboard")
        tensorboard_dir = os.path.abspath(os.path.expanduser(tensorboard_dir))  # the folder the user meant
    return Trackers(tuple(names), tensorboard_dir)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check(trackers: Optional[Trackers], store) -> None:
    """Refuse, in one line, a launch whose trackers cannot log: a missing package, or MLflow's
    default file store under a store that is not a local folder. Called before the store is
    written."""
    if not trackers:
        return
    for name in trackers.names:
        module, package = PACKAGES[name]
        if not _installed(module):
            raise SweepConfigError(f"--log {name}: the {module} package is not installed; "
                                   f"pip install {package} (or pip install 'genzoo[trackers]')")
    if "wandb" in trackers.names and os.environ.get("WANDB_MODE") not in ("offline", "disabled") \
            and not _wandb_logged_in():
        # Ray's callback would refuse it with a traceback once the launch has started.
        raise SweepConfigError("--log wandb: no W&B API key; run `wandb login`, set WANDB_API_KEY, "
                               "or log offline with WANDB_MODE=offline (then `wandb sync`)")
    if "mlflow" in trackers.names and not os.environ.get("MLFLOW_TRACKING_URI") and not store.local_path():
        raise SweepConfigError(f"--log mlflow: the store {store.uri} is not a local folder for MLflow's default "
                               "file store; set MLFLOW_TRACKING_URI (an MLflow server, sqlite:///..., or a folder)")


def _wandb_logged_in() -> bool:
    """A W&B API key in WANDB_API_KEY or wandb's own login (netrc), found without a prompt and
    without the network; wandb's lines about it are not shown."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import contextlib
    import io

    import wandb

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return bool(wandb.login(prompt=False, verify=False))


def mlflow_uri(store) -> str:
    """$MLFLOW_TRACKING_URI, else a file store ``_mlruns`` in the experiment's folder (a folder
    not starting with ``_`` would be taken for a table of the store: sweep.compact)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or Path(store.local_path(), MLRUNS).resolve().as_uri()


def callbacks(trackers: Optional[Trackers], store, experiment: str) -> list:
    """The Tune logger callbacks of ``trackers`` (none without ``--log``)."""
    out = []
    for name in trackers.names if trackers else ():
        if name == "tensorboard":
            directory = trackers.tensorboard_dir
            out.append(_tensorboard_class()(None if directory is None else os.path.join(directory, experiment),
                                            in_store=store.local_path() is not None))
        elif name == "mlflow":
            out.append(_mlflow_class()(mlflow_uri(store), experiment_name=experiment))
        else:
            out.append(_wandb_class()(project=experiment, in_store=store.local_path() is not None))
    return out


def _trial_folder(trial) -> str:
    """The Tune trial's folder in a local store, ``<storage>/<experiment>/_tune/run-<n>/<trial>``.
    Ray's callbacks write to the trial's staging folder on the driver (``trial.local_path``),
    which Tune copies to the store only now and then, and last before the W&B actors have
    finished: a tracker's files would be late or cut short there."""
    os.makedirs(trial.path, exist_ok=True)
    return trial.path


# ---------------------------------------------------------------------------------------------
# what is logged


def _param(value: Any) -> Any:
    """A value every tracker takes: numbers, strings and booleans as they are, the rest
    (None, lists) as their JSON text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _flat(prefix: str, document: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key, value in document.items():
        if isinstance(value, dict):
            out.update(_flat(f"{prefix}{key}.", value))
        else:
            out[f"{prefix}{key}"] = value
    return out


def hyperparameters(trial_config: Dict[str, Any]) -> Dict[str, Any]:
    """The tracker's hyperparameters of a Tune trial (its ``trial.config``): ``trial_id`` and
    every train field, nested settings as ``mode_settings.<name>``. A pack: the fields its
    models share, and the others (and ``trial_id``) as the models' values, comma-separated."""
    trial = trial_config["trial"]
    rows = [{"trial_id": trial_id, **_flat("", config)} for trial_id, config in zip(trial["trial_ids"], trial["configs"])]
    out = {}
    for key in rows[0]:
        values = [_param(row.get(key)) for row in rows]
        out[key] = values[0] if all(v == values[0] for v in values) else ",".join(map(str, values))
    if len(rows) > 1:
        out["models"] = len(rows)
    return out


def epoch_metrics(trial_config: Dict[str, Any], result: Dict[str, Any]) -> Dict[str, Any]:
    """What a tracker logs of one Tune result: the metrics of :data:`METRICS` (``NaN`` left
    out), each named ``<trial_id>/<metric>`` in a pack, and ``training_iteration`` = the epoch,
    the step every one of Ray's logger callbacks logs at."""
    from ray.air.constants import TRAINING_ITERATION

    packed = len(trial_config["trial"]["configs"]) > 1
    prefix = f"{result['genzoo_trial_id']}/" if packed else ""
    out = {TRAINING_ITERATION: int(result["epoch"])}
    for key in METRICS:
        value = result.get(key)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            out[prefix + key] = value
    return out


class _GenzooResults:
    """Hands Ray's callback the metrics of :func:`epoch_metrics` instead of Tune's result."""

    def log_trial_result(self, iteration: int, trial, result: Dict):
        super().log_trial_result(iteration, trial, epoch_metrics(trial.config, result))


# ---------------------------------------------------------------------------------------------
# the callbacks (classes made on first use: Ray and each tracker are imported only then)


def _tensorboard_class():
    from ray.tune.logger import TBXLoggerCallback

    class TensorBoardCallback(_GenzooResults, TBXLoggerCallback):
        """Event files in ``<directory>/<trial>/`` (a resumed trial's next launch adds an event
        file to the same run), else in the Tune trial's folder: in a local store directly
        (:func:`_trial_folder`), in a remote one where Tune uploads it. Hparams are written when
        the trial ends (TensorBoard's HPARAMS tab), scalars as ``ray/tune/<metric>``."""

        def __init__(self, directory: Optional[str] = None, in_store: bool = False):
            super().__init__()
            self._directory, self._in_store = directory, in_store

        def log_trial_start(self, trial):
            if self._directory is None and not self._in_store:
                return super().log_trial_start(trial)
            if trial in self._trial_writer:
                self._trial_writer[trial].close()
            folder = os.path.join(self._directory, str(trial)) if self._directory else _trial_folder(trial)
            self._trial_writer[trial] = self._summary_writer_cls(folder, flush_secs=30)
            self._trial_result[trial] = {}

        def _try_log_hparams(self, trial, result: Dict):
            from tensorboardX.summary import hparams

            for summary in hparams(hparam_dict=hyperparameters(trial.config), metric_dict=result):
                self._trial_writer[trial].file_writer.add_summary(summary)

    return TensorBoardCallback


def _mlflow_class():
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflowCallback(_GenzooResults, MLflowLoggerCallback):
        """One MLflow run per Tune trial, named after it, with the trial's hyperparameters."""

        def setup(self, *args, **kwargs):
            if self.tracking_uri and self.tracking_uri.startswith("file:"):
                # MLflow 3 refuses its file store unless asked for it (it is in maintenance mode);
                # a file store is what genzoo's default (and a file: URI) asks for.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            super().setup(*args, **kwargs)

        def log_trial_start(self, trial):
            if trial not in self._trial_runs:
                run = self.mlflow_util.start_run(tags={**self.tags, "trial_name": str(trial)}, run_name=str(trial))
                self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=hyperparameters(trial.config))

    return MLflowCallback


def _wandb_class():
    import ray
    from ray.air.integrations.wandb import WandbLoggerCallback, _force_on_current_node

    class WandbCallback(_GenzooResults, WandbLoggerCallback):
        """One W&B run per Tune trial (named after it, grouped by Tune run ``run-<n>``), logged by
        Ray's logging actor on the driver's node, which gets every ``WANDB_*`` variable of the
        driver (Ray passes on only ``WANDB_API_KEY``): ``WANDB_MODE=offline`` is honoured. The
        actor is not restarted (Ray's would be, and says so on stderr at every launch): a
        restarted actor would start the run anew anyway. Its files go to ``$WANDB_DIR``, else
        the Tune trial's folder: in a local store directly (:func:`_trial_folder`), in a remote
        one where Tune uploads it."""

        def __init__(self, *args, in_store: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self._in_store = in_store

        def log_trial_start(self, trial):
            exclude = [*self._exclude_results, *self.excludes, "config"]
            where = {"dir": _trial_folder(trial)} if self._in_store and not os.environ.get("WANDB_DIR") else {}
            self._start_logging_actor(
                trial, exclude, id=trial.trial_id, name=str(trial), resume=False, reinit=True,
                allow_val_change=True, group=self.group or trial.experiment_dir_name, project=self.project,
                config=hyperparameters(trial.config), **where, **self.kwargs)

        def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
            if not self._remote_logger_class:
                env = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
                self._remote_logger_class = ray.remote(
                    num_cpus=0, **_force_on_current_node(), runtime_env={"env_vars": env},
                    max_restarts=0, max_task_retries=0)(self._logger_actor_cls)
            super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    return WandbCallback


def describe(trackers: Optional[Trackers], store, experiment: str) -> Sequence[str]:
    """One line per tracker: where it logs (printed by the driver at launch)."""
    lines = []
    for name in trackers.names if trackers else ():
        if name == "tensorboard":
            where = (os.path.join(trackers.tensorboard_dir, experiment) if trackers.tensorboard_dir
                     else f"{store.uri}/{TUNE_DIR}/run-<n>/<trial>")
            lines.append(f"tensorboard: event files in {where}")
        elif name == "mlflow":
            lines.append(f"mlflow: experiment {experiment} at {mlflow_uri(store)}")
        else:
            mode = os.environ.get("WANDB_MODE", "online")
            lines.append(f"wandb: project {experiment} ({mode})")
    return lines
