"""Per-block target execution rates: validation and the published schedules.

A target rate of 1 means the block always runs and carries no gate. ``target_rates`` accepts:

* a number ``t``: every block gated at ``t``;
* a sequence with one value per residual block;
* a preset string ``"NAME:t"`` (see :data:`PRESETS`), e.g. ``"aig50:0.6"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

TargetSpec = float | Sequence[float] | str | None


def _aig50(t: float, num_blocks: int, stage_starts: Sequence[int]) -> list[float]:
    # From the original ConvNet-AIG README (ResNet-50 stages [3, 4, 6, 3]).
    _expect_blocks("aig50", num_blocks, 16)
    return [1, 1, 0.8, 1, t, t, t, 1, t, t, t, t, t, 1, 0.7, 1]


def _aig101(t: float, num_blocks: int, stage_starts: Sequence[int]) -> list[float]:
    # From the original ConvNet-AIG README (ResNet-101 stages [3, 4, 23, 3]).
    _expect_blocks("aig101", num_blocks, 33)
    return [1.0] * 8 + [t] * 25


def _uniform(t: float, num_blocks: int, stage_starts: Sequence[int]) -> list[float]:
    return [t] * num_blocks


def _stage(t: float, num_blocks: int, stage_starts: Sequence[int]) -> list[float]:
    # The first (downsampling) block of each stage always runs, the others are gated at t.
    return [1.0 if i in stage_starts else t for i in range(num_blocks)]


PRESETS: dict[str, Callable[[float, int, Sequence[int]], list[float]]] = {
    "aig50": _aig50,
    "aig101": _aig101,
    "uniform": _uniform,
    "stage": _stage,
}


def _expect_blocks(preset: str, num_blocks: int, expected: int) -> None:
    if num_blocks != expected:
        raise ValueError(f"target preset {preset!r} is for {expected} residual blocks, "
                         f"but this model has {num_blocks}")


def check_rate(value: float, what: str = "target rate") -> float:
    """Return ``value`` as float, or raise a ValueError if it is not in [0, 1]."""
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {rate}")
    return rate


def parse_target_spec(spec: TargetSpec) -> TargetSpec:
    """Read a target specification written as text, as the command line and ``--set`` give it.

    ``"0.6"`` -> 0.6, ``"1,1,0.8"`` -> [1.0, 1.0, 0.8], ``"aig50:0.6"`` stays a preset; numbers,
    sequences and None pass through. Used for recipes and the command line alike.
    """
    if not isinstance(spec, str) or ":" in spec:
        return spec
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"cannot read target rates {spec!r}: give a number, a comma-separated "
                         "list or a preset like 'aig50:0.6'") from None
    return values[0] if len(values) == 1 else values


def resolve_target_rates(spec: TargetSpec, num_blocks: int, stage_starts: Sequence[int] = (),
                         default: TargetSpec = 1.0) -> tuple[float, ...]:
    """Turn a target specification into one validated rate per residual block.

    Args:
        spec: number, sequence, ``"preset:t"`` string, or None for ``default``.
        num_blocks: number of residual blocks L of the model.
        stage_starts: indices of the first block of each stage (for the ``stage`` preset).
        default: specification used when ``spec`` is None.

    Returns:
        A tuple of L floats in [0, 1].
    """
    spec = parse_target_spec(default if spec is None else spec)
    if isinstance(spec, str):
        rates = _from_preset(spec, num_blocks, stage_starts)
    elif isinstance(spec, Sequence):
        rates = list(spec)
        if len(rates) != num_blocks:
            raise ValueError(f"target_rates has {len(rates)} entries but the model has "
                             f"{num_blocks} residual blocks; give one per block or a single number")
    else:
        rates = [spec] * num_blocks
    return tuple(check_rate(r) for r in rates)


def _from_preset(spec: str, num_blocks: int, stage_starts: Sequence[int]) -> list[float]:
    name, _, value = spec.partition(":")
    if name not in PRESETS or not value:
        raise ValueError(f"unknown target preset {spec!r}; use 'NAME:t' with NAME one of "
                         f"{', '.join(PRESETS)} (e.g. 'aig50:0.6')")
    return PRESETS[name](check_rate(value), num_blocks, stage_starts)
