"""The package data a wheel carries: shipped weights, recipes and kernel sources must reach a
non-editable install (an editable one reads them from the source tree and would hide a wrong
glob)."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "aignet"


def _package_data() -> set[Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["aignet"]
    return {p for g in globs for p in PACKAGE.glob(g)}


def test_every_shipped_weight_manifest_recipe_and_kernel_source_is_package_data():
    wanted = {p for p in PACKAGE.rglob("*")
              if p.suffix in (".safetensors", ".yaml", ".cpp", ".h") or p.name == "manifest.json"}
    assert wanted, "no weights or recipes found under src/aignet"
    assert wanted <= _package_data(), sorted(str(p) for p in wanted - _package_data())
