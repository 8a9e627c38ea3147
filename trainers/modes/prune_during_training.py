"""The callbacks of ``prune_during_training``: structured pruning during training, its noise
injection variants and the instability of every event (Bartoldson et al. 2020, "The
generalization-stability tradeoff in neural network pruning"; the authors' code is
bbartoldson/GeneralizationStabilityTradeoff). The settings are
:class:`trainers.modes.settings.PruneDuringTrainingSettings`.

**Layers.** The conv layers of the model in ``named_modules`` order; convs whose name contains
``shortcut`` are never selected by ``last_conv:K`` or ``block_convs``. A layer's BatchNorm is the
first ``BatchNorm2d`` after it in ``named_modules`` order with as many channels, before the next
conv (VGG's ``conv``/``bn``, a basic block's ``conv1``/``bn1``, ``conv2``/``bn2``).

**Events** happen at the start of an epoch: the event "after e epochs" happens before the first
batch of the 0-based epoch e (:meth:`PruneDuringTraining.on_epoch_start`), so ``state.pt`` of
epoch e is written before it and a run resumed there redoes it exactly. A schedule value s is
an event after s + 1 epochs with ``event_after: epoch_index`` (the default: the authors' loop
prunes after training epoch s, 0-based, of ``range(s, e + 1, r)``; Appendix A) and after s
epochs with ``epochs_done``. The ``epoch`` column of the events table is the epochs done.
Every layer with an event then is treated at once, then the test accuracy is read:
``t_pre`` (before) and ``t_post`` (after) are the loop's own full-set evaluation
(``state.evaluate``, eval mode) and ``instability = (t_pre − t_post) / t_pre``,
``stability = 1 − instability`` (Section 2, Figure 1; the paper's ``t_pre`` and ``t_post``).
A run's mean stability (its model row) averages the events that targeted at least one
filter, as the authors' analysis averages only the epochs that pruned something; 1 when none
did (scratch pruning, or a schedule too fine for the layer).

**How many filters.** For a layer of n filters with K events, with ``fractions`` (total p)
m = ⌈(1 − p)·n⌉ filters remain at the end (Appendix A; (1 − p)·n is rounded to 9 decimals
first, so float noise never keeps a filter: the same m as the authors' float arithmetic for
every power-of-two n of the zoo's models). ``count_rule: ceil`` (default; Appendix A and the
authors' ``_prune_layer``): ⌈m + (n − m)(K − j)/K⌉ filters remain after the j-th event
(computed in integers); ``round``: round(j·(n − m)/K) are removed after it (Python's rounding,
halves to even). With ``rates`` (r, a fraction of the *original* n): ⌈n·(1 − j·r)⌉ remain
(``ceil``, at least 1) or min(n − 1, round(j·r·n)) are removed (``round``). An event targets
the difference between two consecutive counts. The ``rate`` column of the events table is
targeted / n.

**Scores** (one per filter, computed at the event): ``l2`` and ``l1``: the norm of the
filter's weights; ``activation``: a moving average of the filter's mean |activation| after
BatchNorm and before the non-linearity (the conv output when there is no BatchNorm), updated
as ``avg ← decay·avg + (1 − decay)·batch`` from the training batch of every
``activation_every``-th optimizer step (the paper's 0.9 and 10, Appendix A footnote 3; the
first update copies the batch value); ``ebn``: E[BN] (Appendix B.2.1), with γ' = |γ| and β the
BatchNorm scale and shift, λ = −β/γ': E[R] = γ'·φ(λ) + β·(1 − Φ(λ)) (= max(β, 0) when γ' = 0).
**Targets** among the filters never targeted before (pruned, or noised: the authors' code
keeps one mask for both, so noise never targets a filter twice): ``S`` the lowest scores,
``L`` the highest (ties: the lower index first, a stable sort), ``R`` the first of a
``torch.randperm`` drawn from the mode's own generator (seed
``derive_seed(seed, "prune_during_training")``, saved with the state, so the global RNG of
the loop is never touched).

**Pruning** (``intervention: prune``): a removed filter's weights are masked in ``state.masks``
(re-applied by the loop after every step); with ``prune_batchnorm`` its bias and BatchNorm
scale and shift are zeroed at the event and after every step, so its output channel is exactly
zero in train and eval mode and the network computes what the network without that filter
computes. ``scratch``: the masks of the last event of every layer are chosen at the start of
epoch 0 (scores of the initial weights; with ``activation`` all scores are 0 and the stable
sort decides) and never change; scratch runs have no events (stability 1 by definition, the
control of Figure 6). The authors' scratch runs also skip the first epoch's training; here
they train every epoch.

**Noise injection** (Section 3.3, Figure 5, Appendix D): nothing is removed; the targets are
perturbed for a window of ``noise_batches`` = N training batches, as the authors' code does
before each forward pass of the window:

- ``zero_return_zero`` (Figure 5 top, their ``iter_*_zeroing``): this event's targets' conv
  weights are zeroed at the event and again after each of the first N − 1 optimizer steps,
  so the N batches see them at zero; the N-th step's update is kept and they train on from
  there (the authors multiply by zero before each forward pass, never after a step).
- ``zero_return_saved`` (Figure D.2, their ``cumu_*_zeroing_restore``): every filter ever
  targeted, this event's included, has its conv weights and its BatchNorm scale and shift
  zeroed the same way; after the N-th step the conv weights, scale, shift and BatchNorm
  running mean and variance of those filters are restored to their values at the event.
- ``gaussian`` (Figure 5 bottom, their ``iter_*_gaussian``): fresh N(0, σ²) is added to this
  event's targets' conv weights before each of the N batches, σ the standard deviation
  (Bessel-corrected, as ``torch.std``) of the weights of the layer's first filter never
  targeted, recomputed before every draw. The authors' window also spans their test batches
  (T = ``eval_noise_batches``, 79): with N ≥ 2 the event adds one draw of variance T·σ²
  before ``t_post`` is read (its test pass; theirs read the accuracy while the draws
  accumulated batch by batch) and the first batch of each later epoch of the window gets
  2T·σ² more (their tests before and after the per-epoch pruning step). "Gaussian 1" is one
  draw of σ² at the event and nothing else (Appendix D.1: "noise added on just the first test
  batch (providing an identical effect to adding the noise on the first training batch)").

Every layer has its own window, as in the authors' code (a counter per layer): a layer's event
that targets filters ends that layer's active window (restoring, for ``zero_return_saved``)
and starts a new one; an event that targets none, and every other layer's event, leave it
running. At an epoch boundary inside a Gaussian window whose layer has no event, the window gets
T·σ² before ``t_pre`` is read and T·σ² after ``t_post`` (the authors' two test passes, before
and after their pruning step), so an event's stability measures that event alone. The
windows' remaining batches, targets, saved values and the generator are saved with the state,
so a window that spans an epoch boundary resumes exactly.

Not done: the paper also prunes the shortcut connections into a removed ResNet feature map
(Appendix A); here only the filter (and its BatchNorm) is removed. For a block's second conv
the paper reads the activation after the shortcut is added; here it is read at the conv's own
BatchNorm (before the addition).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from trainers.config import TrainConfig
from trainers.data import derive_seed
from trainers.modes.callbacks import ModeCallbacks

EVENTS = "events"
SHORTCUT = "shortcut"


class PruneDuringTrainingError(ValueError):
    """A schedule that does not fit the model: one line naming the setting."""


def conv_layers(model: nn.Module) -> List[Tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def batchnorm_of(model: nn.Module) -> Dict[str, nn.BatchNorm2d]:
    """conv name -> its BatchNorm (see the module docstring), for the convs that have one."""
    out: Dict[str, nn.BatchNorm2d] = {}
    last: Optional[Tuple[str, nn.Conv2d]] = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and last is not None:
            if module.num_features == last[1].out_channels and last[0] not in out:
                out[last[0]] = module
            last = None
    return out


def select_layers(model: nn.Module, layers: Tuple[str, ...]) -> List[str]:
    """The conv layer names ``layers`` selects, in model order (see the settings)."""
    convs = [name for name, _ in conv_layers(model)]
    plain = [name for name in convs if SHORTCUT not in name]
    selector = layers[0]
    if selector.startswith("last_conv:"):
        count = int(selector.split(":", 1)[1])
        if count > len(plain):
            raise PruneDuringTrainingError(
                f"mode_settings.layers: got {selector}, allowed: last_conv:K with K <= {len(plain)} for this model")
        return plain[-count:]
    if selector == "block_convs":
        chosen = [name for name in plain if name.startswith("blocks.")]
        if not chosen:
            raise PruneDuringTrainingError("mode_settings.layers: block_convs, but the model has no blocks.* conv layer")
        return chosen
    unknown = [name for name in layers if name not in convs]
    if unknown:
        raise PruneDuringTrainingError(
            f"mode_settings.layers: {unknown[0]!r} is not a conv layer, allowed: {', '.join(convs)}")
    return [name for name in convs if name in layers]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def removed_after(settings, n: int, events: int, j: int, index: int) -> int:
    """Filters of an n-filter layer removed (or targeted in all) after its j-th of ``events``
    events, by ``settings.count_rule`` (module docstring, "How many filters")."""
    ceil = settings.count_rule == "ceil"
    if settings.rates:
        rate = settings.rates[index if len(settings.rates) > 1 else 0]
        if ceil:
            return n - max(1, math.ceil(round(n * (1.0 - j * rate), 9)))
        return min(n - 1, int(round(j * rate * n)))
    fraction = settings.fractions[index if len(settings.fractions) > 1 else 0]
    remaining = math.ceil(round((1.0 - fraction) * n, 9))
    if ceil:
        # Appendix A: ⌈m + (n − m)(K − j)/K⌉ remain, in integers (m is an integer).
        return n - (remaining + _ceil_div((n - remaining) * (events - j), events))
    return int(round(j * (n - remaining) / events))


def ebn_scores(bn: nn.BatchNorm2d) -> torch.Tensor:
    """E[BN] of every channel (Appendix B.2.1): γ'·φ(λ) + β·(1 − Φ(λ)), λ = −β/γ'."""
    gamma = bn.weight.detach().abs().double()
    beta = bn.bias.detach().double()
    safe = torch.where(gamma > 0, gamma, torch.ones_like(gamma))
    lam = -beta / safe
    phi = torch.exp(-0.5 * lam * lam) / math.sqrt(2.0 * math.pi)
    value = gamma * phi + beta * (1.0 - torch.special.ndtr(lam))
    return torch.where(gamma > 0, value, beta.clamp(min=0.0)).float()


def choose(scores: torch.Tensor, candidates: torch.Tensor, count: int, target: str,
           generator: torch.Generator) -> torch.Tensor:
    """``count`` filter indices among ``candidates`` (bool over filters) by ``target``, sorted."""
    pool = torch.nonzero(candidates.cpu(), as_tuple=False).flatten()
    if count <= 0:
        return torch.zeros(0, dtype=torch.long)
    if target == "R":
        order = torch.randperm(len(pool), generator=generator)
    else:
        values = scores.detach().cpu().double()[pool]
        order = torch.sort(values, descending=target == "L", stable=True).indices
    return torch.sort(pool[order[:count]]).values


class PruneDuringTraining(ModeCallbacks):
    """``prune_during_training``: see the module docstring."""

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.events: List[Dict[str, Any]] = []
        self.removed: Dict[str, torch.Tensor] = {}
        self.noised: Dict[str, torch.Tensor] = {}
        self.activation: Dict[str, torch.Tensor] = {}
        self.windows: Dict[str, Dict[str, Any]] = {}
        self.scratch_done = False
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(derive_seed(config.seed, "prune_during_training"))
        self._pending: Dict[str, torch.Tensor] = {}
        self._hooked: Optional[nn.Module] = None
        self._layers: Optional[List[str]] = None

    # state -------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {
            "events": [dict(row) for row in self.events],
            "removed": {k: v.detach().cpu() for k, v in self.removed.items()},
            "noised": {k: v.detach().cpu() for k, v in self.noised.items()},
            "activation": {k: v.detach().cpu() for k, v in self.activation.items()},
            "windows": {name: _to_cpu(window) for name, window in self.windows.items()},
            "scratch_done": self.scratch_done,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.events = [dict(row) for row in state.get("events", [])]
        self.removed = dict(state.get("removed", {}))
        self.noised = dict(state.get("noised", {}))
        self.activation = dict(state.get("activation", {}))
        self.windows = {name: dict(window) for name, window in state.get("windows", {}).items()}
        old = state.get("window") or {}  # a state.pt written before per-layer windows (issue 22)
        for name, targets in old.get("targets", {}).items():
            self.windows[name] = {"remaining": old["remaining"], "targets": targets}
        self.scratch_done = bool(state.get("scratch_done", False))
        if "generator" in state:
            self.generator.set_state(state["generator"])

    def tables(self) -> Dict[str, list]:
        return {EVENTS: [dict(row) for row in self.events]} if self.events else {}

    def model_info(self, model_id: str) -> Dict[str, Any]:
        """The run's mean stability: :func:`mean_stability` of its events table."""
        return {"stability": mean_stability(self.events)}

    # helpers -----------------------------------------------------------------------------
    def _setup(self, model: nn.Module) -> None:
        if self._hooked is model:
            return
        self._hooked = model
        self._layers = select_layers(model, self.settings.layers)
        self._modules = dict(model.named_modules())
        self._bn = batchnorm_of(model)
        if self.settings.score == "ebn":
            missing = [name for name in self._layers if name not in self._bn]
            if missing:
                raise PruneDuringTrainingError(f"mode_settings.score: ebn needs a BatchNorm after {missing[0]}")
        if self.settings.intervention == "zero_return_saved":
            missing = [name for name in self._layers if name not in self._bn]
            if missing:
                raise PruneDuringTrainingError(
                    f"mode_settings.intervention: zero_return_saved needs a BatchNorm after {missing[0]}")
        if self.settings.score == "activation":
            for name in self._layers:
                watched = self._bn.get(name, self._modules[name])
                watched.register_forward_hook(self._recorder(name))

    def _recorder(self, name: str):
        def hook(module, inputs, output):
            if module.training:
                self._pending[name] = output.detach().abs().mean(dim=(0, 2, 3)).float()
        return hook

    def _scores(self, name: str) -> torch.Tensor:
        conv = self._modules[name]
        weight = conv.weight.detach().flatten(1)
        score = self.settings.score
        if score == "l2":
            return weight.norm(p=2, dim=1)
        if score == "l1":
            return weight.abs().sum(dim=1)
        if score == "ebn":
            return ebn_scores(self._bn[name])
        return self.activation.get(name, torch.zeros(conv.out_channels))

    def _zero_removed(self) -> None:
        """Bias and BatchNorm scale/shift of every removed filter to zero (``prune_batchnorm``)."""
        if not self.settings.prune_batchnorm:
            return
        with torch.no_grad():
            for name, removed in self.removed.items():
                if not bool(removed.any()):
                    continue
                conv = self._modules[name]
                where = removed.to(conv.weight.device)
                if conv.bias is not None:
                    conv.bias.masked_fill_(where, 0.0)
                bn = self._bn.get(name)
                if bn is not None:
                    bn.weight.masked_fill_(where, 0.0)
                    bn.bias.masked_fill_(where, 0.0)

    def _set_mask(self, state, name: str) -> None:
        conv = self._modules[name]
        keep = ~self.removed[name].to(conv.weight.device)
        state.masks[f"{name}.weight"] = keep.view(-1, *([1] * (conv.weight.dim() - 1))).expand_as(conv.weight).clone()
        with torch.no_grad():
            conv.weight.masked_fill_(~state.masks[f"{name}.weight"], 0.0)

    def _noise(self, name: str, variance_factor: int) -> None:
        """Add N(0, variance_factor·σ²) to the targets of ``name``'s window (gaussian), σ the
        standard deviation of the layer's first never-targeted filter right now."""
        if variance_factor <= 0:
            return
        targets = self.windows[name]["targets"]
        with torch.no_grad():
            weight = self._modules[name].weight
            std = math.sqrt(variance_factor) * first_untargeted_std(weight, self.noised[name])
            draw = torch.randn((len(targets), *weight.shape[1:]), generator=self.generator) * std
            weight[targets.to(weight.device)] += draw.to(weight.device, weight.dtype)

    def _zero_targets(self, name: str) -> None:
        """Zero the targets of ``name``'s window: conv weights, and for ``zero_return_saved``
        the BatchNorm scale and shift too (Appendix D.2)."""
        targets = self.windows[name]["targets"]
        with torch.no_grad():
            weight = self._modules[name].weight
            weight[targets.to(weight.device)] = 0.0
            if self.settings.intervention == "zero_return_saved":
                bn = self._bn[name]
                bn.weight[targets.to(bn.weight.device)] = 0.0
                bn.bias[targets.to(bn.bias.device)] = 0.0

    def _restorable(self, name: str) -> Dict[str, torch.Tensor]:
        """What ``zero_return_saved`` saves and restores (Appendix D.2): the conv weights and
        the BatchNorm scale, shift, running mean and running variance."""
        bn = self._bn[name]
        tensors = {"weight": self._modules[name].weight, "bn_weight": bn.weight, "bn_bias": bn.bias,
                   "running_mean": bn.running_mean, "running_var": bn.running_var}
        return {key: tensor for key, tensor in tensors.items() if tensor is not None}

    def _end_window(self, name: str) -> None:
        window = self.windows.pop(name)
        if self.settings.intervention == "zero_return_saved":
            with torch.no_grad():
                for key, tensor in self._restorable(name).items():
                    where = window["targets"].to(tensor.device)
                    tensor[where] = window["saved"][key].to(tensor.device, tensor.dtype)

    # hooks -------------------------------------------------------------------------------
    def on_epoch_start(self, state) -> None:
        self._setup(state.model)
        settings = self.settings
        if settings.scratch:
            if not self.scratch_done:
                self._scratch(state)
            return
        event = state.epoch in settings.all_event_epochs()
        # Gaussian windows that go on across this boundary (the step before added σ² for the
        # next batch): the authors' test pass before their pruning step adds T draws ...
        running = list(self.windows) if settings.intervention == "gaussian" else []
        for name in running:
            self._noise(name, settings.eval_noise_batches)
        if event:
            self._event(state)
        # ... and the one after it T more (after t_post: the event's stability is its own).
        for name in running:
            if name in self.windows and self.windows[name].get("since", -1) != state.epoch:
                self._noise(name, settings.eval_noise_batches)

    def _scratch(self, state) -> None:
        for index, name in enumerate(self._layers):
            n = self._modules[name].out_channels
            events = len(self.settings.layer_event_epochs(index))
            count = removed_after(self.settings, n, events, events, index)
            chosen = choose(self._scores(name), torch.ones(n, dtype=torch.bool), count, self.settings.target,
                            self.generator)
            removed = torch.zeros(n, dtype=torch.bool)
            removed[chosen] = True
            self.removed[name] = removed
            self._set_mask(state, name)
        self._zero_removed()
        self.scratch_done = True

    def _event(self, state) -> None:
        settings = self.settings
        pruning = settings.intervention == "prune"
        before = state.evaluate(state.model)["test_acc"]
        chosen: Dict[str, Tuple[torch.Tensor, int, int]] = {}
        for index, name in enumerate(self._layers):
            epochs = settings.layer_event_epochs(index)
            if state.epoch not in epochs:
                continue
            j = epochs.index(state.epoch) + 1
            n = self._modules[name].out_channels
            count = removed_after(settings, n, len(epochs), j, index) - \
                removed_after(settings, n, len(epochs), j - 1, index)
            # One mask of every filter ever targeted, pruned or noised (the authors' ``mask``).
            taken = (self.removed if pruning else self.noised).get(name, torch.zeros(n, dtype=torch.bool))
            targets = choose(self._scores(name), ~taken, count, settings.target, self.generator)
            chosen[name] = (targets, n, j)
            taken = taken.clone()
            taken[targets] = True
            (self.removed if pruning else self.noised)[name] = taken
        started: List[str] = []
        if pruning:
            for name in chosen:
                self._set_mask(state, name)
            self._zero_removed()
        else:
            started = [name for name, (targets, _, _) in chosen.items() if len(targets)]
            for name in started:
                self._start_window(name, state.epoch, chosen[name][0])
        after = state.evaluate(state.model)["test_acc"]
        if settings.intervention == "gaussian" and settings.noise_batches > 1:
            for name in started:
                self._noise(name, 1)  # the first training batch's own draw
        instability = (before - after) / before if before > 0 else float("nan")
        event = len({row["epoch"] for row in self.events})
        for name, (targets, n, j) in chosen.items():
            self.events.append({
                "trial_id": self.config.trial_id,
                "event": event,
                "epoch": state.epoch,
                "step": state.step,
                "layer": name,
                "layer_event": j,
                "intervention": settings.intervention,
                "filters_original": n,
                "filters_targeted": len(targets),
                "filters_removed": len(targets) if pruning else 0,
                "filters_remaining": int(n - self.removed[name].sum()) if pruning else n,
                "filters_noised": len(self.windows[name]["targets"]) if name in started else 0,
                "rate": len(targets) / n,
                "filters": ",".join(str(int(i)) for i in targets),
                "t_pre": float(before),
                "t_post": float(after),
                "instability": float(instability),
                "stability": float(1.0 - instability),
            })

    def _start_window(self, name: str, epoch: int, new_targets: torch.Tensor) -> None:
        """A noise window of ``name`` over this event's targets, or (``zero_return_saved``) over
        every filter of the layer ever targeted, after ending the layer's running window; the
        event's own noise (module docstring)."""
        settings = self.settings
        if name in self.windows:
            self._end_window(name)
        if settings.intervention == "zero_return_saved":
            targets = torch.nonzero(self.noised[name], as_tuple=False).flatten()
        else:
            targets = new_targets
        window: Dict[str, Any] = {"remaining": settings.noise_batches, "targets": targets, "since": epoch}
        if settings.intervention == "zero_return_saved":
            window["saved"] = {key: tensor.detach()[targets.to(tensor.device)].cpu().clone()
                               for key, tensor in self._restorable(name).items()}
        self.windows[name] = window
        if settings.intervention == "gaussian":
            # "Gaussian 1": one draw; otherwise the authors' test pass after the event (T draws).
            self._noise(name, 1 if settings.noise_batches == 1 else settings.eval_noise_batches)
        else:
            self._zero_targets(name)

    def on_step_end(self, state) -> None:
        self._setup(state.model)
        if self.removed:
            self._zero_removed()
        if self._pending:
            if state.step % self.settings.activation_every == 0:
                decay = self.settings.activation_decay
                for name, value in self._pending.items():
                    old = self.activation.get(name)
                    self.activation[name] = value.cpu() if old is None else decay * old + (1.0 - decay) * value.cpu()
            self._pending = {}
        for name in list(self.windows):
            self.windows[name]["remaining"] -= 1
            if self.windows[name]["remaining"] == 0:
                self._end_window(name)
            elif self.settings.intervention == "gaussian":
                self._noise(name, 1)
            else:
                self._zero_targets(name)


def first_untargeted_std(weight: torch.Tensor, targeted: torch.Tensor) -> float:
    """The standard deviation (Bessel-corrected, ``torch.std``) of the weights of the first
    filter not in ``targeted``: the authors' ``w[mask][0].std()``, "the empirical standard
    deviation of an unmodified filter from the same layer" (Appendix D.1)."""
    free = torch.nonzero(~targeted.cpu(), as_tuple=False).flatten()
    if not len(free):
        raise PruneDuringTrainingError("gaussian noise: every filter of the layer has been targeted")
    return float(weight.detach()[int(free[0])].double().std())


def mean_stability(events: List[Mapping[str, Any]]) -> float:
    """The mean over events (one value per event, shared by its layers) of the stability of
    the events that targeted at least one filter; 1.0 when none did. The authors' analysis
    (``figures_and_tables/utils.py``, ``summarize``) averages the epochs that pruned something
    and gives runs that never pruned 100%."""
    per_event: Dict[int, float] = {}
    targeted: Dict[int, int] = {}
    for row in events:
        per_event[row["event"]] = row["stability"]
        targeted[row["event"]] = targeted.get(row["event"], 0) + int(row["filters_targeted"])
    values = [value for event, value in per_event.items() if targeted[event] > 0]
    return sum(values) / len(values) if values else 1.0


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
