"""Your own image folders at their own size, and predictions on image files."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aignet.cli import main
from aignet.data import FolderOptions, build_data
from aignet.data.tensor_loader import TensorLoader


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    monkeypatch.setenv("AIGNET_CACHE", "off")


def _image(kind: str, size: int, value: int):
    from PIL import Image

    rng = np.random.default_rng(value)
    base = np.clip(rng.normal(value, 20, (size, size)), 0, 255)
    if kind == "rgb":
        return Image.fromarray(np.stack([base] * 3, -1).astype(np.uint8), "RGB")
    if kind == "gray":
        return Image.fromarray(base.astype(np.uint8), "L")
    if kind == "rgba":
        return Image.fromarray(np.stack([base] * 4, -1).astype(np.uint8), "RGBA")
    return Image.fromarray((base * 257).astype(np.uint16))  # 16-bit grayscale


def make_folder(root: Path, size: int = 16, per_class: int = 12, val: bool = True,
                corrupt: bool = True) -> Path:
    """Two classes told apart by brightness, in every image mode, with .PNG in capitals."""
    kinds = ["rgb", "gray", "rgba", "i16"]
    splits = ["train", "val"] if val else ["train"]
    for split in splits:
        for label, (name, value) in enumerate([("dark", 50), ("light", 200)]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                ext = ".PNG" if i % 3 == 0 else ".png"
                _image(kinds[i % 4], size, value + i + 7 * label).save(folder / f"{i}{ext}")
    if corrupt:
        (root / "train" / "dark" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_small_folder_is_read_into_memory_at_its_own_size(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    data = build_data("imagefolder", root, 8, val_batch_size=8)
    assert isinstance(data.train, TensorLoader)  # the CIFAR path: memory, batch-wise augment
    assert data.info.input_size == 16 and data.info.classes == ["dark", "light"]
    assert data.info.train_size == 24 and data.info.val_size == 24  # broken.png skipped
    assert "skipped 1 undecodable" in capsys.readouterr().err
    mean = np.array(data.info.mean)
    assert 0.3 < mean.mean() < 0.7 and len(data.info.std) == 3  # computed, not ImageNet's
    x, y = next(data.val.iter_from(0))
    assert x.shape == (8, 3, 16, 16)
    # 16-bit images are scaled, not clipped to white: every image keeps its brightness.
    raw = torch.cat([xb for xb, _ in data.val.iter_from(0)])
    assert float(raw.amax()) < 5  # normalised values of a non-saturated image


def test_image_size_limits_and_holdout(tmp_path, capsys):
    root = make_folder(tmp_path / "f", val=False, corrupt=False)
    with pytest.raises(ValueError, match="no val/ folder: set data.val_fraction"):
        build_data("imagefolder", root, 4)
    data = build_data("imagefolder", root, 4, folder=FolderOptions(24, 0.25), limit_train=8,
                      limit_val=3)
    assert "holding out 6 of 24" in capsys.readouterr().err
    assert data.info.input_size == 24 and data.info.train_size == 8 and data.info.val_size == 3
    assert set(data.train.labels.tolist()) == {0, 1}  # a limit is a random subset


def test_class_folders_that_differ_are_named(tmp_path):
    root = make_folder(tmp_path / "f", corrupt=False)
    (root / "val" / "light").rename(root / "val" / "bright")
    with pytest.raises(ValueError, match="only in train/: light; only in val/: bright"):
        build_data("imagefolder", root, 4)


def test_large_images_keep_the_worker_pipeline_at_the_set_size(tmp_path):
    root = make_folder(tmp_path / "f", size=80, per_class=4, corrupt=False)
    data = build_data("imagefolder", root, 4, workers=0, limit_train=6,
                      folder=FolderOptions(image_size=72))
    assert not isinstance(data.train, TensorLoader)
    x, _ = next(data.train.iter_from(0))
    assert x.shape == (4, 3, 72, 72) and data.info.train_size == 6


def test_train_then_predict_files_folders_and_globs(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    out, recipe = tmp_path / "run", tmp_path / "folder.yaml"
    recipe.write_text("model: {name: aig_resnet20_cifar}\n"
                      f"data: {{name: imagefolder, root: {root}, batch_size: 8, "
                      "val_batch_size: 8}\ntrain: {epochs: 1, threads: 2}\n")
    assert main(["train", str(recipe), "--out", str(out)]) == 0
    capsys.readouterr()
    (tmp_path / "junk.png").write_bytes(b"nope")
    files = [str(root / "val" / "dark"), str(root / "val" / "light" / "1.png"),
             str(root / "val" / "light" / "*.PNG"), str(tmp_path / "junk.png")]
    assert main(["predict", str(out / "last.pt"), *files, "--json", "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert len(rows) == 12 + 1 + 4 + 1
    good = [r for r in rows if "error" not in r]
    assert len(good) == len(rows) - 1 and rows[-1]["file"].endswith("junk.png")
    assert "skipped" in captured.err and "junk.png" in captured.err
    assert all(len(r["top"]) == 2 and r["macs"] > 0 and r["executed_blocks"] <= 9 for r in good)
    assert abs(sum(t["probability"] for t in good[0]["top"]) - 1) < 0.5
    assert main(["predict", str(out / "last.pt"), files[1], "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("file,class1,probability1") and len(lines) == 2


def test_predictor_classify_matches_logits():
    import aignet

    model = aignet.create_model("aig_resnet20_cifar").eval()
    predictor = aignet.Predictor(model)
    x = torch.randn(3, 3, 32, 32)
    rows = predictor.classify(x, top_k=2)
    logits, _ = predictor(x)
    assert [r["top"][0][0] for r in rows] == logits.argmax(1).tolist()


def test_hubconf_builds_every_model_locally():
    repo = Path(__file__).resolve().parents[2]
    model = torch.hub.load(str(repo), "aig_resnet20_cifar", source="local", num_classes=5)
    assert model.fc.out_features == 5
    import importlib.util

    import aignet

    spec = importlib.util.spec_from_file_location("hubconf", repo / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    assert all(callable(getattr(hub, name)) for name in aignet.list_models())
