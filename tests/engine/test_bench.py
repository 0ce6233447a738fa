"""The benchmark's machinery (not its timings: those live in benchmarks/)."""

import json

import pytest
import torch

import aignet
from aignet.cli import main
from aignet.engine.bench import benchmark, benchmark_model, calibrate_gates
from aignet.models.resnet_weights import GATE_KEY
from aignet.nn.blocks import remove_gates

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


def test_remove_gates_gives_the_plain_resnet_with_the_same_weights():
    gated = aignet.create_model("aig_resnet20_cifar")
    x = torch.randn(4, 3, 32, 32)
    calibrate_gates(gated, torch.randn(64, 3, 32, 32), 0.5)
    dense = aignet.create_model("resnet20_cifar").eval()
    dense.load_state_dict({k: v for k, v in gated.state_dict().items() if GATE_KEY not in k})
    with torch.no_grad():
        assert not torch.equal(gated(x).gates, torch.ones(4, 9))  # some block is skipped
        remove_gates(gated)
        out = gated(x)
        assert not any(gated.gated) and torch.equal(out.gates, torch.ones(4, 9))
        assert torch.equal(out.logits, dense(x).logits)


def test_benchmark_model_times_the_models_own_decisions():
    model = aignet.create_model("aig_resnet20_cifar")
    images = torch.randn(40, 3, 32, 32)
    calibrate_gates(model, images, 0.5)  # stands in for training: decisions differ per image
    result = benchmark_model(model, images, (1, 16), reps=1, warmup=0, images_per_run=32)
    expected = aignet.Predictor(model, channels_last=True)(images[:32]).record
    rows = result["rows"]
    assert [(r["batch_size"], r["execution"], r["images"]) for r in rows] == [
        (1, "sparse", 32), (16, "sparse", 32)]
    for row in rows:
        assert set(row) >= ROW_FIELDS | {"measured_over_ideal", "measured_over_mac_ideal"}
        assert row["execution_rate"] == pytest.approx(expected.gated_rate, abs=1e-4)
        assert row["mac_ratio"] == pytest.approx(expected.summary()["mac_ratio"], abs=1e-4)
        assert row["overhead"] * row["measured_over_ideal"] == pytest.approx(1, rel=1e-3)
        assert row["measured_over_mac_ideal"] == pytest.approx(
            row["mac_ratio"] / row["time_ratio"], rel=1e-3)
    assert result["config"]["threshold"] == 0.5


def test_benchmark_model_refuses_dense_models_and_too_few_images():
    with pytest.raises(ValueError, match="no gates"):
        benchmark_model(aignet.create_model("resnet20_cifar"), torch.randn(4, 3, 32, 32))
    with pytest.raises(ValueError, match="batch size 8 needs 8 images, got 4"):
        benchmark_model(aignet.create_model("aig_resnet20_cifar"), torch.randn(4, 3, 32, 32),
                        (8,), reps=1, warmup=0, images_per_run=8)
