import json
import subprocess
import sys

import pytest

from aignet.cli import main


def test_models_lists_registry(capsys):
    assert main(["models", "aig_*cifar"]) == 0
    names = capsys.readouterr().out.split()
    assert "aig_resnet110_cifar" in names and "resnet50" not in names


def test_info_json(capsys):
    assert main(["info", "aig_resnet110_cifar", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gated_blocks"] == 54 and len(info["blocks"]) == 54
    assert info["macs_dense"] == pytest.approx(253e6, rel=0.01)
    assert 0 < info["gate_macs_percent"] < 0.02
    first = info["blocks"][0]
    assert first["stage"] == 1 and first["input_shape"] == [16, 32, 32] and first["gated"]
    assert {"params", "residual_macs"} <= set(info) | set(first)


def test_info_options(capsys):
    main(["info", "aig_resnet50", "--input-size", "112", "--num-classes", "10",
          "--target-rates", "aig50:0.5", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["input_shape"] == [3, 112, 112] and info["num_classes"] == 10
    assert info["gated_blocks"] == 10
    assert 4.09e9 / 5 < info["macs_dense"] < 4.09e9 / 3  # about a quarter of 224x224


@pytest.mark.parametrize("argv,message", [
    (["info", "resnet5"], "unknown model 'resnet5'"),
    (["info", "aig_resnet20_cifar", "--target-rates", "2"], "must be in [0, 1]"),
    (["info", "aig_resnet20_cifar", "--target-rates", "x,y"], "cannot read target rates"),
])
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_python_dash_m_runs():
    done = subprocess.run([sys.executable, "-m", "aignet", "models"], capture_output=True,
                          text=True, check=True)
    assert "aig_resnet50" in done.stdout
