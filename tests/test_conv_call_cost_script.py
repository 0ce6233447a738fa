"""benchmarks/conv_call_cost.py: the overhead that sub-batching puts on convolution time."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
cost = pytest.importorskip("conv_call_cost")


def _linear(fixed, per_image, sizes=(1, 2, 4, 8, 16, 32)):
    return {n: fixed + per_image * n for n in sizes}


def test_time_proportional_to_images_costs_nothing_to_split():
    seconds = _linear(0.0, 2.0)
    for rate in (0.3, 0.6, 0.9):
        assert cost.sub_batch_overhead(seconds, 32, rate) == pytest.approx(1.0)


def test_a_fixed_cost_per_call_matches_the_closed_form():
    fixed, per_image, batch, rate = 40.0, 20.0, 32, 0.3
    expected = (fixed * (1 - (1 - rate) ** batch) + per_image * rate * batch) / (
        rate * (fixed + per_image * batch))
    got = cost.sub_batch_overhead(_linear(fixed, per_image), batch, rate)
    assert got == pytest.approx(expected) and got > 1.1


def test_interpolation_and_fit():
    seconds = {2: 10.0, 4: 14.0, 8: 30.0}
    assert cost.interpolate(3, seconds) == 12.0 and cost.interpolate(8, seconds) == 30.0
    fixed, per_image = cost.fit([2, 4, 8, 16], [5 + 3 * n for n in (2, 4, 8, 16)])
    assert math.isclose(fixed, 5.0) and math.isclose(per_image, 3.0)
