"""The split/join/verify helper used to carry CIFAR-10 to a GPU machine in parts."""

import importlib.util
import os
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "carry_data.py"
spec = importlib.util.spec_from_file_location("carry_data", SCRIPT)
carry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(carry)


def test_split_join_verify_in_separate_calls(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name, size in (("a.bin", 3 * carry.MIB + 17), ("b.bin", carry.MIB // 2), ("c.txt", 10)):
        (source / name).write_bytes(os.urandom(size))
    manifest = carry.split(source, tmp_path / "carry", part_mib=1)
    parts = sorted(p.name for p in (tmp_path / "carry").glob("part-*"))
    assert len(parts) >= 4
    for part in parts:  # every part stays within the limit
        assert sum(f.stat().st_size for f in (tmp_path / "carry" / part).iterdir()) <= carry.MIB
    target = tmp_path / "dst"
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "manifest.json").write_text((tmp_path / "carry" / "manifest.json").read_text())
    for part in parts:  # one "call" per part: only that part present
        os.rename(tmp_path / "carry" / part, staged / part)
        assert carry.join(staged, target) > 0
        os.rename(staged / part, tmp_path / "carry" / part)
    assert carry.verify(tmp_path / "carry" / "manifest.json", target) == []
    assert set(manifest["files"]) == {"a.bin", "b.bin", "c.txt"}
    with open(target / "a.bin", "r+b") as f:
        f.seek(5)
        f.write(b"X")
    manifest_path = tmp_path / "carry" / "manifest.json"
    assert carry.verify(manifest_path, target) == ["a.bin: checksum mismatch"]
    (target / "c.txt").unlink()
    assert "missing c.txt" in carry.verify(manifest_path, target)
