"""The ConvNet-AIG gate: decides per image whether a residual block runs.

Scores convention: ``scores[:, 0]`` is *skip*, ``scores[:, 1]`` is *execute*
(``EXECUTE``), as in the original implementation.

Decision modes, switched at run time with :func:`set_gate_mode` (no rebuild):

training (``module.training``)
    ``hard`` (default): straight-through Gumbel. Forward is the one-hot Gumbel-max sample,
    backward the gradient of ``softmax((scores + G) / tau)``.
    ``soft``: the Gumbel-softmax relaxation forward and backward ("soft gates" ablation).
    ``threshold``: no noise: forward the deterministic inference decision
    ``softmax(scores)[EXECUTE] > threshold``, backward the gradient of
    ``softmax(scores / tau)[EXECUTE]`` (straight-through). Fine-tuning in this mode trains the
    network on exactly the graphs it will run at inference.
inference (``module.eval()``)
    ``deterministic`` (default): execute iff ``softmax(scores)[EXECUTE] > threshold``.
    ``stochastic``: a Gumbel-max sample.
    ``expected``: every block runs, scaled by the layer's tracked execution rate.
    ``all``: every block runs, unscaled (the dense network).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aignet.nn import gate_head
from aignet.nn.gated_ops import spatial_mean
from aignet.nn.gumbel import gumbel_noise, gumbel_softmax

SKIP, EXECUTE = 0, 1
TRAIN_MODES = ("hard", "soft", "threshold")
INFERENCE_MODES = ("deterministic", "stochastic", "expected", "all")
DEFAULT_HIDDEN = 16
DEFAULT_INIT_RATE = 0.85
# The last layer starts almost at zero so the bias alone sets the initial opening rate.
_FC2_INIT_STD = 1e-3


def evaluates_gates(mode: str) -> bool:
    """Whether inference mode ``mode`` computes the gates (and so pays for them).

    ``deterministic`` and ``stochastic`` evaluate every gate; ``expected`` and ``all`` run every
    block without asking its gate.
    """
    return mode in ("deterministic", "stochastic")


def threshold_logit(threshold: float) -> float:
    """Score margin ``s_exec - s_skip`` equivalent to ``softmax(s)[EXECUTE] > threshold``.

    Comparing the margin with ``logit(T)`` avoids the softmax and is exact in real arithmetic;
    T = 0 maps to -inf (always execute) and T = 1 to +inf (never execute).
    """
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold) - math.log1p(-threshold)


def pooled_sum(x: Tensor) -> Tensor:
    """Spatial sum of a feature map (B, C, H, W) -> (B, C) in float32.

    A sum rather than a mean saves the division kernel (callers fold 1/(H*W) into their first
    layer), and ``dtype`` is passed only when needed: it forces a full copy of the input.
    """
    if x.dtype == torch.float32:
        return x.sum(dim=(2, 3))
    return x.sum(dim=(2, 3), dtype=torch.float32)


def float32_region(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast disabled where it is enabled (entering the context costs ~3 us otherwise)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return contextlib.nullcontext()


class GateBase(nn.Module):
    """Mode handling shared by :class:`Gate` and its inference-only fused form.

    Subclasses provide ``scores(x)`` (B, 2) and ``margin(x)`` = execute minus skip score (B,).
    ``forward(x)`` returns a float32 tensor of shape (B,): the factor that multiplies the
    residual branch (0/1 for hard decisions, a probability for soft/expected modes).
    """

    def __init__(self, init_rate: float, momentum: float) -> None:
        super().__init__()
        if not 0.0 < init_rate < 1.0:
            raise ValueError(f"gate init_rate must be in (0, 1), got {init_rate}")
        self.register_buffer("running_rate", torch.tensor(float(init_rate)))
        self.momentum = momentum
        self.train_mode = "hard"
        self.inference = "deterministic"
        self.threshold = 0.5
        self.tau = 1.0
        self.generator: torch.Generator | None = None

    def scores(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def binary(self) -> bool:
        """True when the gate returns hard 0/1 decisions (so no branch needs scaling)."""
        if self.training:
            return self.train_mode != "soft"
        return self.inference in ("deterministic", "stochastic")

    def margin(self, x: Tensor) -> Tensor:
        """``scores[:, EXECUTE] - scores[:, SKIP]``, shape (B,)."""
        s = self.scores(x)
        return s[:, EXECUTE] - s[:, SKIP]

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self._train_gate(x)
        return self._inference_gate(x)

    def _train_gate(self, x: Tensor) -> Tensor:
        g = self._train_factor(x)
        with torch.no_grad():
            self.running_rate.lerp_(g.detach().mean(), self.momentum)
        return g

    def _train_factor(self, x: Tensor) -> Tensor:
        """The training-mode factor g (B,) of :attr:`train_mode`, with its gradient."""
        if self.train_mode == "threshold":
            margin = self.margin(x)
            prob = torch.sigmoid(margin / self.tau)  # softmax(scores / tau)[EXECUTE]
            hard = (margin > threshold_logit(self.threshold)).to(prob.dtype)
            return hard + (prob - prob.detach())
        sample = gumbel_softmax(self.scores(x), tau=self.tau, hard=self.train_mode == "hard",
                                generator=self.generator)
        return sample[:, EXECUTE]

    def _inference_gate(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        if self.inference == "all":
            return x.new_ones(batch, dtype=torch.float32)
        if self.inference == "expected":
            return self.running_rate.float().expand(batch)
        if self.inference == "stochastic":
            # Gumbel-max over (skip, execute): execute iff s_e + G_e > s_s + G_s.
            margin = self.margin(x)
            noise = gumbel_noise(margin.new_empty(batch, 2), self.generator)
            return (margin + noise[:, EXECUTE] - noise[:, SKIP] > 0).float()
        return self.decide(x, threshold_logit(self.threshold))

    def decide(self, x: Tensor, margin_threshold: float) -> Tensor:
        """Deterministic decisions as float 0/1: ``margin(x) > margin_threshold``."""
        return (self.margin(x) > margin_threshold).float()

    def extra_repr(self) -> str:
        return (f"train_mode={self.train_mode}, inference={self.inference}, "
                f"threshold={self.threshold}, tau={self.tau}")


class Gate(GateBase):
    """Pool -> Linear(C, d) -> BatchNorm1d -> ReLU -> Linear(d, 2): the ConvNet-AIG gate.

    Args:
        in_channels: channels C of the block input the gate reads.
        hidden: hidden width d.
        init_rate: probability of executing at initialisation (sets the last bias).
        momentum: EMA momentum of ``running_rate``, the tracked batch execution rate.
    """

    def __init__(self, in_channels: int, hidden: int = DEFAULT_HIDDEN,
                 init_rate: float = DEFAULT_INIT_RATE, momentum: float = 0.1) -> None:
        super().__init__(init_rate, momentum)
        if hidden < 1:
            raise ValueError(f"gate hidden width (gate_hidden) must be >= 1, got {hidden}")
        # fc1 has no bias: the BatchNorm that follows would cancel it.
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 2)
        self.reset_parameters(init_rate)

    def reset_parameters(self, init_rate: float = DEFAULT_INIT_RATE) -> None:
        """Small last-layer weights and a bias that opens the gate with ``init_rate``."""
        nn.init.normal_(self.fc2.weight, std=_FC2_INIT_STD)
        with torch.no_grad():
            self.fc2.bias.zero_()
            self.fc2.bias[EXECUTE] = math.log(init_rate) - math.log1p(-init_rate)
            self.running_rate.fill_(init_rate)

    def _train_factor(self, x: Tensor) -> Tensor:
        if not gate_head.applies(self, x):
            return super()._train_factor(x)
        with float32_region(x):  # the same values and gradients, one compiled call each way
            return gate_head.train_gate_head(self, spatial_mean(x),
                                             threshold_logit(self.threshold))

    def scores(self, x: Tensor) -> Tensor:
        """(skip, execute) relevance scores of shape (B, 2), computed in float32."""
        with float32_region(x):
            pooled = spatial_mean(x)
            hidden = F.relu(self.bn(self.fc1(pooled)))
            return self.fc2(hidden)


def set_gate_mode(model: nn.Module, *, train: str | None = None, inference: str | None = None,
                  threshold: float | None = None, tau: float | None = None,
                  generator: torch.Generator | None = None) -> nn.Module:
    """Switch the decision mode of every gate in ``model`` in place.

    Args:
        model: any module containing gates.
        train: ``"hard"``, ``"soft"`` or ``"threshold"`` (used while ``model.training``).
        inference: one of :data:`INFERENCE_MODES` (used in ``eval()``).
        threshold: deterministic threshold T in [0, 1].
        tau: Gumbel-softmax temperature (> 0).
        generator: random generator for Gumbel noise (None: the global RNG).

    Returns:
        ``model``, for chaining.
    """
    _check_choice("train mode", train, TRAIN_MODES)
    _check_choice("inference mode", inference, INFERENCE_MODES)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"gate threshold must be in [0, 1], got {threshold}")
    if tau is not None and tau <= 0:
        raise ValueError(f"gate temperature tau must be > 0, got {tau}")
    for gate in iter_gates(model):
        if train is not None:
            gate.train_mode = train
        if inference is not None:
            gate.inference = inference
        if threshold is not None:
            gate.threshold = float(threshold)
        if tau is not None:
            gate.tau = float(tau)
        if generator is not None:
            gate.generator = generator
    return model


def iter_gates(model: nn.Module) -> Iterable[GateBase]:
    """All gates (plain or fused) of ``model`` in registration order."""
    return (m for m in model.modules() if isinstance(m, GateBase))


def _check_choice(what: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
