"""DDP on CPU with gloo: global-batch target-rate loss and a 2-process torchrun training run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aignet.nn.losses import target_rate_loss
from aignet.training.distributed import DistInfo, global_execution_rates
from data_factory import write_idx_dataset

TARGETS = [0.3, 1.0, 0.7, 0.5]


def _full_batch():
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(8, 4, generator=gen) > 0.4).float()


def _rank_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    info = DistInfo(rank, world)
    half = _full_batch().chunk(world)[rank].clone().requires_grad_()
    loss = target_rate_loss(global_execution_rates(half, info), TARGETS)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad": half.grad}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_global_rates_match_single_process(tmp_path):
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    full = _full_batch().requires_grad_()
    single = target_rate_loss(global_execution_rates(full, DistInfo()), TARGETS)
    single.backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(got["loss"], single.detach())
        # all_reduce's backward sums the replicated loss of both ranks: DDP's averaging of
        # parameter gradients over 2 ranks then gives exactly the single-process gradient.
        assert torch.allclose(got["grad"] / 2, full.grad.chunk(2)[rank])


@pytest.mark.skipif(shutil.which("torchrun") is None and not (
    Path(sys.executable).parent / "torchrun").exists(), reason="torchrun not installed")
def test_torchrun_two_process_training(tmp_path):
    data = write_idx_dataset(tmp_path / "mnist", n_train=128, n_test=64)
    torchrun = Path(sys.executable).parent / "torchrun"
    sets = {"model.name": "aig_resnet20_cifar", "data.name": "mnist", "data.root": str(data),
            "data.batch_size": 32, "data.val_batch_size": 32, "train.epochs": 2,
            "train.threads": 1}
    argv = [str(torchrun if torchrun.exists() else "torchrun"), "--standalone",
            "--nproc_per_node=2", "-m", "aignet", "train", "-", "--out", str(tmp_path / "run")]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("{}\n")
    argv[argv.index("-")] = str(recipe)
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    env = dict(os.environ, AIGNET_CACHE="off", OMP_NUM_THREADS="1")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    sums = log[-1]["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert log[-1]["val_images"] == 64  # both ranks' halves of the test set, combined
