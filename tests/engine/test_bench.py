"""The benchmark's machinery (not its timings: those live in benchmarks/)."""

import json

import pytest
import torch

import aignet
from aignet.cli import main
from aignet.engine.bench import benchmark, calibrate_gates

ROW_FIELDS = {"batch_size", "execution", "execution_rate", "mac_ratio", "ideal_ratio",
              "time_ratio", "overhead"}


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.6, 1.0])
def test_calibration_hits_the_requested_rate(rate):
    model = aignet.create_model("aig_resnet20_cifar")
    images = torch.randn(200, 3, 32, 32)
    calibrate_gates(model, images, rate)
    with torch.no_grad():
        gates = model(images).gates
    assert torch.allclose(gates.mean(0), torch.full((9,), rate), atol=0.01)
    assert not model.training


def test_benchmark_rows_are_consistent():
    result = benchmark("aig_resnet20_cifar", rate=0.5, batch_sizes=(1, 4), reps=1, warmup=0)
    rows = result["rows"]
    assert [(r["batch_size"], r["execution"]) for r in rows] == [
        (1, "masked"), (1, "sparse"), (4, "masked"), (4, "sparse")]
    for row in rows:
        assert set(row) >= ROW_FIELDS
        assert row["overhead"] == pytest.approx(row["time_ratio"] / row["ideal_ratio"], rel=1e-3)
        assert 0.3 < row["execution_rate"] < 0.7
    sparse = [r for r in rows if r["execution"] == "sparse"]
    assert all(r["mac_ratio"] < 0.8 for r in sparse)
    assert all(r["mac_ratio"] >= 1.0 for r in rows if r["execution"] == "masked")
    assert result["config"]["dense_model"] == "resnet20_cifar"


def test_bench_command_json(capsys):
    assert main(["bench", "--model", "aig_resnet20_cifar", "--rate", "0.5", "--batch-sizes",
                 "2", "--reps", "1", "--warmup", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["execution"] for r in doc["rows"]} == {"masked", "sparse"}


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_bench_command_in_reduced_precision(capsys, precision):
    assert main(["bench", "--model", "aig_resnet20_cifar", "--rate", "0.5", "--batch-sizes",
                 "2", "--reps", "1", "--warmup", "0", "--json", "--precision", precision]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["precision"] == precision
    assert all(0.2 < r["execution_rate"] < 0.8 for r in doc["rows"])


def test_bench_refuses_dense_models_and_bad_rates(capsys):
    assert main(["bench", "--model", "resnet20_cifar"]) == 2
    assert "not a gated model" in capsys.readouterr().err
    assert main(["bench", "--rate", "1.5"]) == 2
    assert "--rate must be in [0, 1]" in capsys.readouterr().err
