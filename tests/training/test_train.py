"""End-to-end training on a tiny synthetic data set (CPU)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from aignet.cli import main
from aignet.training.checkpoint import load_checkpoint
from aignet.training.config import load_config
from aignet.training.train import train
from data_factory import write_idx_dataset


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGNET_CACHE", "off")
    return write_idx_dataset(tmp_path / "mnist", n_train=512, n_test=128)


def _overrides(data_dir, **extra):
    values = {"model.name": "aig_resnet20_cifar", "model.target_rates": 0.3,
              "data.name": "mnist", "data.root": str(data_dir), "data.batch_size": 32,
              "data.val_batch_size": 64, "optim.lr": 0.1, "optim.schedule": "cosine",
              "optim.weight_decay": 1e-4, "train.epochs": 4, "train.threads": 2}
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def test_tiny_training_learns_and_moves_rates_to_target(data_dir, tmp_path):
    config = load_config(None, _overrides(data_dir))
    train(config, tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3, 4]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    first, last = (sum(e["train_layer_rates"]) / 9 for e in (log[0], log[-1]))
    assert last < first - 0.1, (first, last)  # from ~0.85 toward the 0.3 target
    assert log[-1]["val_top1_error"] < 0.3  # chance is 0.9
    assert log[-1]["val_mac_ratio"] < 0.8
    assert {"lr", "train_top5_error", "val_layer_rates", "val_macs_mean",
            "val_images_per_s", "epoch_time_s"} <= set(log[-1])
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["state"]["epoch"] == 4 and ckpt["config"]["model"]["target_rates"] == 0.3
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "config.yaml").is_file()


def _train_cmd(data_dir, out, *extra):
    return [sys.executable, "-m", "aignet", "train", "-", "--out", str(out),
            *sum((["--set", o] for o in _overrides(data_dir, **{"train.epochs": 5})), []),
            *extra]


def test_killed_run_resumes_to_identical_weights(data_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {save_every_steps: 1}\n")
    full, killed = tmp_path / "full", tmp_path / "killed"
    cmd = lambda out, *e: [a if a != "-" else str(recipe) for a in _train_cmd(data_dir, out, *e)]  # noqa: E731
    subprocess.run(cmd(full), check=True, capture_output=True)
    proc = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step, deadline = 0, time.time() + 120
    while step < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError, ValueError):  # not written yet
            step = load_checkpoint(killed / "last.pt")["state"]["global_step"]
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(killed / "last.pt")["state"]["global_step"]
    assert 0 < killed_at < 80
    subprocess.run(cmd(killed, "--resume"), check=True, capture_output=True)
    a = load_checkpoint(full / "last.pt")
    b = load_checkpoint(killed / "last.pt")
    assert a["state"] == b["state"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    logged = [json.loads(x)["epoch"] for x in (killed / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5]


def test_eval_command_json(data_dir, tmp_path, capsys):
    config = load_config(None, _overrides(data_dir, **{"train.epochs": 1}))
    train(config, tmp_path / "run")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run" / "last.pt"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"top1_error", "top5_error", "macs_mean", "macs_dense", "executed_blocks_mean",
            "layer_rates", "images_per_s"} <= set(doc)
    assert doc["images"] == 128 and len(doc["layer_rates"]) == 9
    assert main(["eval", str(tmp_path / "run" / "last.pt"), "--mode", "all", "--json"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert dense["macs_mean"] == dense["macs_dense"] and dense["executed_blocks_mean"] == 9
    assert main(["eval", str(tmp_path / "run" / "last.pt"), "--execution", "masked", "--json",
                 "--no-fuse"]) == 0
    masked = json.loads(capsys.readouterr().out)
    assert masked["top1_error"] == doc["top1_error"] and masked["layer_rates"] == doc["layer_rates"]
    for precision in ("bf16", "int8"):
        assert main(["eval", str(tmp_path / "run" / "last.pt"), "--precision", precision,
                     "--calibration-images", "64", "--json"]) == 0
        low = json.loads(capsys.readouterr().out)
        assert low["precision"] == precision and low["images"] == 128
        assert abs(low["top1_error"] - doc["top1_error"]) <= 0.1
        assert abs(low["macs_mean"] - doc["macs_mean"]) <= 0.1 * doc["macs_dense"]
    assert low["calibration_images"] == 64


def test_bench_command_times_a_checkpoint_on_its_own_images(data_dir, tmp_path, capsys):
    config = load_config(None, _overrides(data_dir, **{"train.epochs": 1}))
    train(config, tmp_path / "run")
    ckpt = str(tmp_path / "run" / "last.pt")
    capsys.readouterr()
    assert main(["eval", ckpt, "--limit", "8", "--json"]) == 0
    rates = json.loads(capsys.readouterr().out)["layer_rates"]
    assert main(["bench", ckpt, "--images", "8", "--batch-sizes", "1,4", "--reps", "1",
                 "--warmup", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["batch_size"], r["images"]) for r in doc["rows"]] == [(1, 8), (4, 8)]
    for row in doc["rows"]:
        assert row["execution_rate"] == pytest.approx(sum(rates) / len(rates), abs=1e-3)
    assert doc["config"]["checkpoint"] == ckpt and doc["config"]["data"] == "mnist"
    assert main(["bench", ckpt, "--rate", "0.3"]) == 2
    assert "drop --rate" in capsys.readouterr().err
    assert main(["bench", ckpt, "--images", "8"]) == 2
    assert "smaller than the largest batch size 256" in capsys.readouterr().err


@pytest.mark.parametrize("override,message", [
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("optim.schedule=exp", "unknown schedule"),
    ("model.target_rates=1.5", r"target rate must be in \[0, 1\]"),
    ("data.root=/nonexistent/mnist", "MNIST directory not found"),
])
def test_bad_runs_fail_before_training(data_dir, tmp_path, capsys, override, message):
    argv = ["train", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "out")]
    (tmp_path / "none.yaml").write_text("{}\n")
    for item in _overrides(data_dir) + [override]:
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and __import__("re").search(message, err), err
    assert not (tmp_path / "out" / "last.pt").exists()


def test_eval_rejects_non_checkpoints(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"junk")
    assert main(["eval", str(tmp_path / "x.pt")]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err


def _dense_run(data_dir, tmp_path) -> str:
    """A one-epoch dense ResNet-20 run in tmp_path/dense; its last.pt."""
    dense = load_config(None, _overrides(data_dir, **{"model.name": "resnet20_cifar",
                                                     "model.target_rates": "null",
                                                     "train.epochs": 1}))
    train(dense, tmp_path / "dense")
    return str(tmp_path / "dense" / "last.pt")


def test_init_from_a_dense_checkpoint(data_dir, tmp_path):
    from aignet.models.registry import create_model
    from aignet.training.train import init_weights

    source = _dense_run(data_dir, tmp_path)
    dense = load_checkpoint(source)["model"]
    aig = create_model("aig_resnet20_cifar", in_chans=1)
    gate_keys = init_weights(aig, source)
    assert gate_keys and all(".gate." in k for k in gate_keys)
    assert all(torch.equal(aig.state_dict()[k], v) for k, v in dense.items())
    with pytest.raises(ValueError, match="lacks .* non-gate keys"):
        init_weights(create_model("aig_resnet32_cifar", in_chans=1), source)


def test_init_from_a_gated_checkpoint_keeps_its_gates(tmp_path):
    from aignet.models.registry import create_model
    from aignet.training.train import init_weights

    source = create_model("aig_resnet20_cifar")
    torch.nn.init.normal_(source.layer1[0].gate.fc2.weight)
    torch.save({"format": "aignet-checkpoint-v1", "model": source.state_dict()},
               tmp_path / "aig.pt")
    aig = create_model("aig_resnet20_cifar")
    assert init_weights(aig, str(tmp_path / "aig.pt")) == []
    assert all(torch.equal(aig.state_dict()[k], v) for k, v in source.state_dict().items())
    dense = create_model("resnet20_cifar")  # the gates a dense model lacks are left out
    init_weights(dense, str(tmp_path / "aig.pt"))
    assert torch.equal(dense.conv1.weight, source.conv1.weight)


def test_init_from_shipped_weights_by_name():
    from aignet.models.pretrained import pretrained_entry
    from aignet.models.registry import create_model
    from aignet.training.checkpoint import total_epochs
    from aignet.training.train import init_weights

    aig = create_model("aig_resnet32_cifar")
    init_weights(aig, "aig_resnet32_cifar/cifar10")
    shipped = create_model("aig_resnet32_cifar", pretrained="cifar10")
    assert all(torch.equal(aig.state_dict()[k], v) for k, v in shipped.state_dict().items())
    entry = pretrained_entry("aig_resnet32_cifar", "cifar10")
    config = {"model": {"init_from": "aig_resnet32_cifar/cifar10"}, "train": {"epochs": 3}}
    assert total_epochs(config) == entry["train_epochs"] + 3


def test_fine_tune_with_distillation_and_target_warmup(data_dir, tmp_path):
    teacher = _dense_run(data_dir, tmp_path)
    config = load_config(None, _overrides(data_dir, **{
        "train.epochs": 2, "model.init_from": teacher, "loss.distill_from": teacher,
        "loss.target_warmup_epochs": 2}))
    train(config, tmp_path / "aig")
    log = [json.loads(line) for line in (tmp_path / "aig" / "log.jsonl").read_text().splitlines()]
    assert all(e["train_distill"] > 0 for e in log)
    # During the warm-up the targets sit between 0.85 and 0.3, so the loss is below the
    # target-rate loss of the final targets at the same rates.
    rates = torch.tensor(log[0]["train_layer_rates"])
    assert log[0]["train_target_loss"] < 2 * ((rates - 0.3) ** 2).mean().item()
    ckpt = load_checkpoint(tmp_path / "aig" / "last.pt")
    from aignet.training.checkpoint import total_epochs
    assert total_epochs(ckpt["config"]) == 3  # the dense epoch counts


def test_frozen_network_trains_only_the_gates(data_dir, tmp_path, capsys):
    start = _dense_run(data_dir, tmp_path)
    config = load_config(None, _overrides(data_dir, **{
        "train.epochs": 2, "model.init_from": start, "train.freeze_network": "true"}))
    train(config, tmp_path / "aig")
    before = load_checkpoint(start)["model"]
    after = load_checkpoint(tmp_path / "aig" / "last.pt")["model"]
    # Weights and BatchNorm statistics of the network, counters included, are the dense run's.
    assert all(torch.equal(after[k], v) for k, v in before.items())
    log = [json.loads(line) for line in (tmp_path / "aig" / "log.jsonl").read_text().splitlines()]
    assert len(log[-1]["lr"]) == 1  # one parameter group: the gates
    assert sum(log[-1]["train_layer_rates"]) < sum(log[0]["train_layer_rates"])  # they learned
    (tmp_path / "none.yaml").write_text("{}\n")
    argv = ["train", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "bad")]
    capsys.readouterr()
    for item in _overrides(data_dir, **{"model.name": "resnet20_cifar",
                                        "model.target_rates": "null",
                                        "train.freeze_network": "true"}):
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has none" in err, err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("override, message", [
    ("loss.distill_weight=1.5", "loss.distill_weight must be in"),
    ("loss.distill_temperature=0", "loss.distill_temperature must be > 0"),
    ("loss.target_warmup_epochs=-1", "loss.target_warmup_epochs must be >= 0"),
])
def test_bad_distillation_settings_are_refused(data_dir, override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [*_overrides(data_dir), override])


def test_recalibrate_rewrites_batchnorm_statistics_only(data_dir, tmp_path, capsys):
    train(load_config(None, _overrides(data_dir, **{"train.epochs": 1})), tmp_path / "aig")
    src, out = tmp_path / "aig" / "last.pt", tmp_path / "recal.pt"
    assert main(["recalibrate", str(src), "--out", str(out), "--images", "500"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["images"] == 500
    before, after = (load_checkpoint(p)["model"] for p in (src, out))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                           for k in changed)
    assert not any(".gate." in k for k in changed)  # the gates' own statistics are kept
    assert main(["eval", str(out), "--json"]) == 0
    snapshot = out.read_bytes()
    assert main(["recalibrate", str(src), "--out", str(out)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err and out.read_bytes() == snapshot


def test_tensorboard_logs_what_the_log_holds(data_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(load_config(None, _overrides(data_dir, **{"train.epochs": 1,
                                                    "train.tensorboard": "true"})),
          tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/top1_error", "val/macs_mean", "rates/train/layer_00",
            "lr/group_0"} <= tags
    assert events.Scalars("val/top1_error")[0].step == 1
