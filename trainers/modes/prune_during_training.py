"""The callbacks of ``prune_during_training``: structured pruning during training, its noise
injection variants and the instability of every event (Bartoldson et al. 2020, "The
generalization-stability tradeoff in neural network pruning"). The settings are
:class:`trainers.modes.settings.PruneDuringTrainingSettings`.

**Layers.** The conv layers of the model in ``named_modules`` order; convs whose name contains
``shortcut`` are never selected by ``last_conv:K`` or ``block_convs``. A layer's BatchNorm is the
first ``BatchNorm2d`` after it in ``named_modules`` order with as many channels, before the next
conv (VGG's ``conv``/``bn``, a basic block's ``conv1``/``bn1``, ``conv2``/``bn2``).

**Events** happen at the start of an epoch: the event "at epoch e" happens after e epochs of
training, before the first batch of the 0-based epoch e (:meth:`PruneDuringTraining.on_epoch_start`),
so ``state.pt`` of epoch e is written before it and a run resumed there redoes it exactly.
Every layer with an event at e is treated at once, then the test accuracy is read:
``t_pre`` (before) and ``t_post`` (after) are the loop's own full-set evaluation
(``state.evaluate``, eval mode) and ``instability = (t_pre − t_post) / t_pre``,
``stability = 1 − instability`` (Section 2, Figure 1; the paper's ``t_pre`` and ``t_post``).

**How many filters.** For a layer of n filters with K events, the filters removed after its
j-th event are, with ``fractions`` (total p): m = ⌈(1 − p)·n⌉ filters remain at the end
(Appendix A; (1 − p)·n is rounded to 9 decimals first, so float noise never adds a filter) and
round(j·(n − m)/K) are removed; with ``rates`` (r, a fraction of the *original* n):
min(n − 1, round(j·r·n)). ``round`` is Python's (halves to even). An event targets the
difference between two consecutive counts. The ``rate`` column of the events table is
targeted / n.

**Scores** (one per filter, computed at the event): ``l2`` and ``l1``: the norm of the
filter's weights; ``activation``: a moving average of the filter's mean |activation| after
BatchNorm and before the non-linearity (the conv output when there is no BatchNorm), updated
as ``avg ← decay·avg + (1 − decay)·batch`` from the training batch of every
``activation_every``-th optimizer step (the paper's 0.9 and 10, Appendix A footnote 3; the
first update copies the batch value); ``ebn``: E[BN] (Appendix B.2.1), with γ' = |γ| and β the
BatchNorm scale and shift, λ = −β/γ': E[R] = γ'·φ(λ) + β·(1 − Φ(λ)) (= max(β, 0) when γ' = 0).
**Targets** among the filters still present: ``S`` the lowest scores, ``L`` the highest (ties:
the lower index first, a stable sort), ``R`` the first of a ``torch.randperm`` drawn from the
mode's own generator (seed ``derive_seed(seed, "prune_during_training")``, saved with the state,
so the global RNG of the loop is never touched).

**Pruning** (``intervention: prune``): a removed filter's weights are masked in ``state.masks``
(re-applied by the loop after every step); with ``prune_batchnorm`` its bias and BatchNorm
scale and shift are zeroed at the event and after every step, so its output channel is exactly
zero in train and eval mode and the network computes what the network without that filter
computes. ``scratch``: the masks of the last event of every layer are chosen at the start of
epoch 0 (scores of the initial weights; with ``activation`` all scores are 0 and the stable
sort decides) and never change; scratch runs have no events (stability 1 by definition, the
control of Figure 6).

**Noise injection** (Section 3.3, Figure 5, Appendix D): the targeted filters' *weights* (not
their bias or BatchNorm, as in Figure 5) are perturbed before each of ``noise_batches`` = N
training batches; nothing is removed. ``zero_return_zero`` / ``zero_return_saved``: the weights
are set to zero at the event and again after each of the first N − 1 optimizer steps of the
window (so N forward passes see them at zero); after the N-th step they are set to zero
(and train on from there) or back to their values at the event. ``gaussian``: before each of
the N batches, fresh noise N(0, σ²) is added, σ² the variance of all the layer's weights at
the event (the paper: "the empirical standard deviation of an unmodified filter from the same
layer"); a batch that is the first of an epoch (the event's first batch included) gets
variance ``epoch_noise_factor``·σ², 79 by default: the paper's runs noised the weights during
the 79 test batches of CIFAR-10 (10,000 images, batch 128) that precede every epoch, which
equals one draw of 79 times the variance. An event that falls inside an active window ends
that window first. The window's remaining batches, targets, saved values, σ and the generator
are saved with the state, so a window that spans an epoch boundary resumes exactly.

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


def removed_after(settings, n: int, events: int, j: int, index: int) -> int:
    """Filters of an n-filter layer removed (or targeted in all) after its j-th of ``events`` events."""
    if settings.rates:
        rate = settings.rates[index if len(settings.rates) > 1 else 0]
        return min(n - 1, int(round(j * rate * n)))
    fraction = settings.fractions[index if len(settings.fractions) > 1 else 0]
    remaining = math.ceil(round((1.0 - fraction) * n, 9))
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
        self.activation: Dict[str, torch.Tensor] = {}
        self.window: Dict[str, Any] = {}
        self.scratch_done = False
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(derive_seed(config.seed, "prune_during_training"))
        self._pending: Dict[str, torch.Tensor] = {}
        self._hooked: Optional[nn.Module] = None
        self._layers: Optional[List[str]] = None

    # state -------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        window = dict(self.window)
        for key in ("targets", "saved"):
            if key in window:
                window[key] = {k: v.detach().cpu() for k, v in window[key].items()}
        return {
            "events": [dict(row) for row in self.events],
            "removed": {k: v.detach().cpu() for k, v in self.removed.items()},
            "activation": {k: v.detach().cpu() for k, v in self.activation.items()},
            "window": window,
            "scratch_done": self.scratch_done,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.events = [dict(row) for row in state.get("events", [])]
        self.removed = dict(state.get("removed", {}))
        self.activation = dict(state.get("activation", {}))
        self.window = dict(state.get("window", {}))
        self.scratch_done = bool(state.get("scratch_done", False))
        if "generator" in state:
            self.generator.set_state(state["generator"])

    def tables(self) -> Dict[str, list]:
        return {EVENTS: [dict(row) for row in self.events]} if self.events else {}

    def model_info(self, model_id: str) -> Dict[str, Any]:
        """The run's mean stability over its events (one value per event, whatever the number
        of layers it touched); 1 for a run without events (scratch pruning, the paper's
        100%-stable control)."""
        per_event = {row["event"]: row["stability"] for row in self.events}
        return {"stability": sum(per_event.values()) / len(per_event) if per_event else 1.0}

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

    def _noise(self, factor: float) -> None:
        """Add N(0, factor·σ²) to every targeted filter of the window (gaussian)."""
        with torch.no_grad():
            for name, targets in self.window["targets"].items():
                weight = self._modules[name].weight
                std = math.sqrt(factor) * float(self.window["std"][name])
                draw = torch.randn((len(targets), *weight.shape[1:]), generator=self.generator) * std
                weight[targets.to(weight.device)] += draw.to(weight.device, weight.dtype)

    def _zero_targets(self) -> None:
        with torch.no_grad():
            for name, targets in self.window["targets"].items():
                weight = self._modules[name].weight
                weight[targets.to(weight.device)] = 0.0

    def _end_window(self) -> None:
        kind = self.settings.intervention
        if kind == "zero_return_zero":
            self._zero_targets()
        elif kind == "zero_return_saved":
            with torch.no_grad():
                for name, targets in self.window["targets"].items():
                    weight = self._modules[name].weight
                    weight[targets.to(weight.device)] = self.window["saved"][name].to(weight.device, weight.dtype)
        self.window = {}

    # hooks -------------------------------------------------------------------------------
    def on_epoch_start(self, state) -> None:
        self._setup(state.model)
        settings = self.settings
        if settings.scratch:
            if not self.scratch_done:
                self._scratch(state)
            return
        if state.epoch in settings.all_event_epochs():
            self._event(state)
        elif self.window.get("remaining", 0) > 0 and settings.intervention == "gaussian":
            # The step before added N(0, σ²) for this batch, the first of an epoch.
            self._noise(settings.epoch_noise_factor - 1.0)

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
        if self.window:
            self._end_window()
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
            removed = self.removed.get(name, torch.zeros(n, dtype=torch.bool))
            candidates = ~removed if settings.intervention == "prune" else torch.ones(n, dtype=torch.bool)
            targets = choose(self._scores(name), candidates, count, settings.target, self.generator)
            chosen[name] = (targets, n, j)
        if settings.intervention == "prune":
            for name, (targets, n, _) in chosen.items():
                removed = self.removed.get(name, torch.zeros(n, dtype=torch.bool)).clone()
                removed[targets] = True
                self.removed[name] = removed
                self._set_mask(state, name)
            self._zero_removed()
        else:
            weights = {name: self._modules[name].weight for name in chosen}
            self.window = {
                "remaining": settings.noise_batches,
                "targets": {name: targets for name, (targets, _, _) in chosen.items()},
                "saved": {name: weights[name].detach()[targets.to(weights[name].device)].cpu().clone()
                          for name, (targets, _, _) in chosen.items()},
                "std": {name: float(weights[name].detach().double().std()) for name in chosen},
            }
            if settings.intervention == "gaussian":
                self._noise(settings.epoch_noise_factor)
            else:
                self._zero_targets()
        after = state.evaluate(state.model)["test_acc"]
        instability = (before - after) / before if before > 0 else float("nan")
        event = len({row["epoch"] for row in self.events})
        for name, (targets, n, j) in chosen.items():
            pruned = settings.intervention == "prune"
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
                "filters_removed": len(targets) if pruned else 0,
                "filters_remaining": int(n - self.removed[name].sum()) if pruned else n,
                "rate": len(targets) / n,
                "filters": ",".join(str(int(i)) for i in targets),
                "t_pre": float(before),
                "t_post": float(after),
                "instability": float(instability),
                "stability": float(1.0 - instability),
            })

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
        if self.window.get("remaining", 0) > 0:
            self.window["remaining"] -= 1
            if self.window["remaining"] == 0:
                self._end_window()
            elif self.settings.intervention == "gaussian":
                self._noise(1.0)
            else:
                self._zero_targets()
