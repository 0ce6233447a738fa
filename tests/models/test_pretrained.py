"""Shipped weights: manifest integrity, loading by name, and accuracy on real CIFAR-10."""

from pathlib import Path

import pytest
import torch

import aignet
from aignet.cli import main
from aignet.models import pretrained

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SHIPPED = pretrained.list_pretrained()


def test_something_is_shipped():
    assert any(name.startswith("aig_") for name in SHIPPED), SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_verify_and_load_by_name(name):
    model_name, tag = name.split("/")
    entry = pretrained.pretrained_entry(model_name, tag)
    path = pretrained.WEIGHTS_DIR / tag / entry["file"]
    assert pretrained.sha256(path) == entry["sha256"]
    assert path.stat().st_size < 2 * 2**20  # half precision keeps each under 2 MB
    model = aignet.create_model(model_name, pretrained=tag).eval()
    assert model.pretrained_cfg["classes"] == entry["data_info"]["classes"]
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, len(entry["data_info"]["classes"]))
    assert {"commit", "config", "top1_error", "macs_mean", "train_epochs"} <= set(entry)
    assert entry["config"]["model"]["name"] == model_name


def test_corrupt_weights_are_refused(tmp_path, monkeypatch):
    state = aignet.create_model("resnet20_cifar").state_dict()
    pretrained.export_weights(state, {"model": "resnet20_cifar"}, "tiny", root=tmp_path)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    assert pretrained.list_pretrained() == ["resnet20_cifar/tiny"]
    loaded = pretrained.load_pretrained_state("resnet20_cifar", "tiny")
    assert all(torch.allclose(loaded[k].float(), v.float(), atol=1e-3) for k, v in state.items())
    path = tmp_path / "tiny" / "resnet20_cifar.safetensors"
    path.write_bytes(path.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ValueError, match="missing or corrupt"):
        pretrained.load_pretrained_state("resnet20_cifar", "tiny")


def test_unknown_pretrained_names_what_is_shipped(capsys):
    assert main(["eval", "--pretrained", "resnet20_cifar/nowhere"]) == 2
    err = capsys.readouterr().err
    assert "no shipped weights for resnet20_cifar/nowhere" in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="no shipped weights"):
        aignet.create_model("resnet20_cifar", pretrained="nowhere")


@pytest.mark.skipif(not (SHARED / "cifar-10-batches-bin").is_dir(),
                    reason=f"real CIFAR-10 not found at {SHARED} (../shared/data)")
@pytest.mark.parametrize("name", [n for n in SHIPPED if n.split("/")[1].startswith("cifar10")])
def test_shipped_model_matches_its_manifest_on_1000_test_images(name, capsys, tmp_path,
                                                                 monkeypatch):
    import json

    monkeypatch.setenv("AIGNET_CACHE", str(tmp_path))
    entry = pretrained.pretrained_entry(*name.split("/"))
    assert main(["eval", "--pretrained", name, "--data-dir", str(SHARED), "--limit", "1000",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 1000
    assert abs(result["top1_error"] - entry["top1_error_first1000"]) <= 0.003
    assert result["macs_mean"] == pytest.approx(entry["macs_mean_first1000"], rel=0.01)
