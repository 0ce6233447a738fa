"""benchmarks/packed_conv.py: packed against plain convolutions in the compiled pass."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aignet.nn import kernels

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(kernels.load() is None, reason="the C++ kernels did not build")
@pytest.mark.parametrize("option", ["packed", "fused"])
def test_writes_one_row_per_rate_and_batch(tmp_path, option):
    out = tmp_path / "packed.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "packed_conv.py"), "--model",
                    "aig_resnet20_cifar", "--rates", "0.3,0.9", "--batch-sizes", "4", "--reps",
                    "1", "--option", option, "--out", str(out)], check=True, capture_output=True,
                   text=True)
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert [(r["target_rate"], r["batch"]) for r in rows] == [(0.3, 4), (0.9, 4)]
    assert rows[0]["execution_rate"] < rows[1]["execution_rate"]
    for row in rows:
        assert row["dense_ms_per_image"] > 0 and row[f"sparse_{option}_ms_per_image"] > 0
        assert row[f"sparse_over_dense_{option}"] == pytest.approx(
            row[f"sparse_{option}_ms_per_image"] / row[f"dense_{option}_ms_per_image"], abs=2e-3)
    assert doc["command"].startswith("python benchmarks/packed_conv.py")
