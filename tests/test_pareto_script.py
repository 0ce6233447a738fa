"""scripts/pareto.py: the distance below the dense curve and how points name their models
(with scripts/ship_weights.py's portable paths)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
pareto = pytest.importorskip("pareto")


def _p(kind, cost, error):
    return {"kind": kind, "macs_mean": cost, "top1_error": error}


def test_below_dense_interpolates_the_dense_curve():
    points = [_p("dense", 40.0, 0.12), _p("dense", 80.0, 0.10),
              _p("aig", 60.0, 0.105), _p("aig", 60.0, 0.12), _p("aig", 90.0, 0.05)]
    # The dense curve gives 11% at 60: 0.5 points better, 1 point worse, outside the range.
    assert pareto.below_dense(points, "macs_mean") == [None, None, 0.5, -1.0, None]


def test_controls_are_measured_against_the_curve_but_not_part_of_it():
    control = _p("dense", 40.0, 0.105) | {"control": True}
    points = [_p("dense", 40.0, 0.12), _p("dense", 80.0, 0.10), control,
              _p("aig", 60.0, 0.105)]
    assert [pareto.on_curve(p) for p in points] == [True, True, False, False]
    # The control lies 1.5 points below the curve at its cost; it does not move the curve.
    assert pareto.below_dense(points, "macs_mean") == [None, None, 1.5, 0.5]


def test_two_controls_form_a_curve_of_their_own():
    controls = [_p("dense", 40.0, 0.10) | {"control": True},
                _p("dense", 80.0, 0.09) | {"control": True}]
    points = [_p("dense", 40.0, 0.12), _p("dense", 80.0, 0.10), *controls,
              _p("aig", 60.0, 0.105)]
    # At 60 the controls give 9.5%: the AIG point is 1 point behind them, 0.5 ahead of the curve;
    # the curve's own points are 2 and 1 points behind the controls.
    assert pareto.below_dense(points, "macs_mean", pareto.is_control) == \
        [-2.0, -1.0, None, None, -1.0]
    assert pareto.below_dense(points, "macs_mean")[4] == 0.5
    assert pareto.below_dense(points[:3] + points[4:], "macs_mean", pareto.is_control) == \
        [None] * 4  # one control is no curve


def test_shipped_weights_are_named_as_such_and_paths_portably(tmp_path):
    name = "resnet20_cifar/cifar10"
    assert pareto.shipped_entry(name)["train_epochs"] >= 1
    assert pareto.portable(name) == name
    run = tmp_path / "runs" / "aig32" / "last.pt"
    assert pareto.shipped_entry(str(run)) is None
    assert pareto.portable(str(run)) == "runs/aig32/last.pt"
    assert pareto.run_label("runs/aig32/last.pt") == "aig32"
    assert pareto.run_label(name) == name


def test_weight_files_of_shipped_weights_and_manifest_runs():
    # A point reused from an earlier --out keeps the file of its shipped weights.
    shipped = pareto.weight_file("resnet20_cifar/cifar10", {})
    assert shipped.startswith("src/aignet/models/weights/") and shipped.endswith(".safetensors")
    manifest = {"runs/aig32/last.pt": "weights/aig32.safetensors"}
    assert pareto.weight_file("runs/aig32/last.pt", manifest) == "weights/aig32.safetensors"
    assert pareto.weight_file("runs/other/last.pt", manifest) is None
