"""Move a data folder to a machine in parts no larger than one transfer, and verify it there.

The lent GPU machines take at most 64 MiB per call, while CIFAR-10 is 184 MB:

    python scripts/carry_data.py split ../shared/data/cifar-10-batches-bin .carry --part-mib 56
    # one device call per part: carry .carry/part-NNN plus .carry/manifest.json and run
    python scripts/carry_data.py join .carry /root/data/cifar-10-batches-bin  # the parts present
    python scripts/carry_data.py verify .carry/manifest.json /root/data/cifar-10-batches-bin

``join`` may run once per call with only the new parts present; ``verify`` checks every file's
SHA-256 against the manifest and says which are missing or corrupt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

MIB = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split(source: Path, out: Path, part_mib: int) -> dict:
    """Cut every file of ``source`` into pieces of at most ``part_mib`` MiB, grouped in parts."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.iterdir() if p.is_file())
    manifest = {"files": {p.name: {"size": p.stat().st_size, "sha256": sha256(p)} for p in files},
                "pieces": []}
    limit, part, used = part_mib * MIB, 0, 0
    for path in files:
        with open(path, "rb") as f:
            offset = 0
            while True:
                if used == limit:  # this part is full: start the next
                    part, used = part + 1, 0
                chunk = f.read(limit - used)
                if not chunk:
                    break
                folder = out / f"part-{part:03d}"
                folder.mkdir(exist_ok=True)
                name = f"{path.name}.{offset:012d}"
                (folder / name).write_bytes(chunk)
                manifest["pieces"].append({"part": part, "file": path.name, "offset": offset,
                                           "piece": name, "size": len(chunk)})
                offset += len(chunk)
                used += len(chunk)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def join(carry: Path, target: Path) -> int:
    """Write every piece present under ``carry`` into its file in ``target``; returns the count."""
    manifest = json.loads((carry / "manifest.json").read_text())
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    for piece in manifest["pieces"]:
        src = carry / f"part-{piece['part']:03d}" / piece["piece"]
        if not src.is_file():
            continue
        dest = target / piece["file"]
        mode = "r+b" if dest.exists() else "wb"
        with open(dest, mode) as f:
            f.seek(piece["offset"])
            f.write(src.read_bytes())
        written += 1
    return written


def verify(manifest_path: Path, target: Path) -> list[str]:
    """Problems found (missing, wrong size, wrong checksum); empty when the copy is exact."""
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for name, meta in manifest["files"].items():
        path = target / name
        if not path.is_file():
            problems.append(f"missing {name}")
        elif path.stat().st_size != meta["size"]:
            problems.append(f"{name}: {path.stat().st_size} bytes, expected {meta['size']}")
        elif sha256(path) != meta["sha256"]:
            problems.append(f"{name}: checksum mismatch")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("split")
    p.add_argument("source", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--part-mib", type=int, default=56)
    p = sub.add_parser("join")
    p.add_argument("carry", type=Path)
    p.add_argument("target", type=Path)
    p = sub.add_parser("verify")
    p.add_argument("manifest", type=Path)
    p.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "split":
        m = split(args.source, args.out, args.part_mib)
        print(f"{len(m['files'])} files in {1 + max(p['part'] for p in m['pieces'])} parts")
    elif args.cmd == "join":
        print(f"{join(args.carry, args.target)} pieces written to {args.target}")
    else:
        problems = verify(args.manifest, args.target)
        print("\n".join(problems) if problems else "all files verified (sha256)")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
