"""Shared fixtures: deterministic seeds and small helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# Tests live in sub-folders that mirror the packages; the shared helpers stay here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
