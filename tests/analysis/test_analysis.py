"""Analysis of learned inference graphs: groups, clustering, figures, report."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from aignet.analysis import stats as analysis
from aignet.analysis.analyze import analyze
from aignet.analysis.groups import (
    CIFAR10,
    FASHION_MNIST,
    check_groups,
    imagenet_groups,
    load_groups,
)
from aignet.cli import main
from aignet.data.mnist import FASHION_CLASSES
from aignet.engine.inference import Predictor
from aignet.training.checkpoint import load_model
from aignet.training.config import load_config
from aignet.training.train import train
from data_factory import write_idx_dataset

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
FIGURES = ["heatmap", "executed_layers", "trajectories", "threshold_sweep", "accuracy_vs_macs",
           "image_grid", "dendrogram", "specialisation"]


@pytest.mark.parametrize("groups,classes", [(CIFAR10, CIFAR_CLASSES),
                                            (FASHION_MNIST, FASHION_CLASSES)])
def test_shipped_groups_cover_every_class_once(groups, classes):
    check_groups(groups, classes)
    assert sorted(sum(groups.values(), [])) == sorted(classes)


def test_imagenet_groups_cover_the_1000_classes():
    names = [f"n{i:04d}" for i in range(1000)]
    groups = imagenet_groups(names)
    check_groups(groups, names)
    assert "n0151" in groups["dogs"] and "n0950" in groups["food"] and "n0009" in groups["birds"]


def test_group_file_and_errors(tmp_path):
    classes = ["a", "b", "c"]
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"a": "x", "1": "y", "c": "x"}))
    assert load_groups(path, classes) == {"x": ["a", "c"], "y": ["b"]}
    with pytest.raises(ValueError, match="in both"):
        check_groups({"x": ["a", "b"], "y": ["b", "c"]}, classes)
    with pytest.raises(ValueError, match="belong to no group"):
        check_groups({"x": ["a"]}, classes)
    with pytest.raises(ValueError, match="unknown class 'z'"):
        check_groups({"x": ["a", "b", "c", "z"]}, classes)


def test_adjusted_rand_index():
    assert analysis.adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    assert analysis.adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    # The documented value of sklearn.metrics.adjusted_rand_score for this pair.
    assert analysis.adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(0.5714286)
    rng = np.random.default_rng(0)
    assert abs(analysis.adjusted_rand_index(rng.integers(0, 3, 3000),
                                            rng.integers(0, 3, 3000))) < 0.02


def test_clustering_recovers_groups_when_rates_follow_them():
    class_group = [0, 1, 0, 2, 1, 2, 0, 1]
    rng = np.random.default_rng(1)
    prototypes = rng.uniform(0, 1, (3, 12))
    rates = prototypes[class_group] + rng.normal(0, 0.01, (8, 12))
    _, clusters = analysis.cluster_classes(rates, 3)
    assert analysis.adjusted_rand_index(clusters, class_group) == 1.0


def test_rates_gap_and_specialisation():
    executed = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1]], dtype=torch.bool)
    labels = torch.tensor([0, 0, 1, 2])
    rates = analysis.class_rates(executed, labels, 3)
    assert np.allclose(rates, [[1, 0.5], [0, 1], [0, 1]])
    groups = analysis.group_rates(executed, labels, [0, 1, 1], 2)
    assert np.allclose(groups, [[1, 0.5], [0, 1]])
    assert analysis.max_category_rate_gap(groups) == (1.0, 0)
    assert np.allclose(analysis.specialisation(rates), rates.var(0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    data = write_idx_dataset(root / "mnist", n_train=384, n_test=200)
    overrides = {"model.name": "aig_resnet20_cifar", "model.target_rates": 0.5,
                 "data.name": "mnist", "data.root": str(data), "data.batch_size": 32,
                 "data.val_batch_size": 100, "train.epochs": 2, "train.threads": 2}
    train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]), root / "aig")
    overrides.update({"model.name": "resnet20_cifar", "model.target_rates": "null",
                      "train.epochs": 1})
    train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]), root / "dense")
    groups = root / "groups.json"
    groups.write_text(json.dumps({str(i): "even" if i % 2 == 0 else "odd" for i in range(10)}))
    return root, groups


def test_analyze_writes_every_figure_and_consistent_numbers(trained, monkeypatch):
    monkeypatch.setenv("AIGNET_CACHE", "off")
    root, groups = trained
    out = root / "report"
    r = analyze(root / "aig" / "last.pt", out, groups_path=str(groups),
                compare=(str(root / "dense" / "last.pt"),), sweep_images=100, grid_images=3)
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 1000, name
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["images"] == 200 and len(saved["sweep"]) == 10
    # Recompute the record independently and compare with the numbers behind the figures.
    model = load_model(str(root / "aig" / "last.pt"))
    from aignet.data import build_data

    data = build_data("mnist", str(root / "mnist"), 100)
    records, labels = [], []
    predictor = Predictor(model)
    for x, y in data.val:
        records.append(predictor(x).record)
        labels.append(y)
    executed = torch.cat([rec.executed for rec in records])
    labels = torch.cat(labels)
    for c in range(10):
        expect = executed[labels == c].float().mean(0).numpy()
        assert np.allclose(saved["class_rates"][c], expect, atol=1e-5)
    assert sum(saved["executed_histogram"]) == 200
    assert saved["executed_per_image"] == executed.sum(1).tolist()
    assert saved["macs_mean"] == pytest.approx(torch.cat([x.macs for x in records]).mean().item())
    assert [m["gated"] for m in saved["compare"]] == [True, False]
    assert 0 <= saved["max_category_rate_gap"] <= 1 and -1 <= saved["adjusted_rand_index"] <= 1
    assert r["speed"]["measured_speedup"] > 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    for name in FIGURES:
        assert f'id="{name}"' in html
    assert "aignet analyze" in html or "Produced by" in html


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="no chromium installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(trained, tmp_path):
    root, groups = trained
    out = tmp_path / "report"
    assert main(["analyze", str(root / "aig" / "last.pt"), "--out", str(out), "--groups",
                 str(groups), "--sweep-images", "100", "--limit", "100"]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000",
                    f"--screenshot={shot}", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1200, 3000)
        assert np.asarray(img.convert("L")).std() > 10  # text and figures, not a blank page
