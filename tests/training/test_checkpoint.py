import pickle

import pytest
import torch

from aignet.training.checkpoint import load_safe, save_atomic


def test_save_atomic_round_trip_and_no_temp_left(tmp_path):
    path = save_atomic({"w": torch.arange(3)}, tmp_path / "sub" / "ckpt.pt")
    assert torch.equal(load_safe(path)["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]


def test_failed_save_keeps_previous_file(tmp_path):
    path = save_atomic({"v": 1}, tmp_path / "ckpt.pt")

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"v": Unsaveable()}, path)
    assert load_safe(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_load_safe_refuses_code_and_garbage(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(ValueError, match="cannot load checkpoint"):
        load_safe(evil)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a valid PyTorch checkpoint"):
        load_safe(junk)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_safe(tmp_path / "missing.pt")
    assert pickle  # the module the unsafe path would use
