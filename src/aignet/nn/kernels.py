"""Optional compiled CPU kernels (``csrc/``), built on first use with PyTorch's C++ extensions.

The kernels fuse what PyTorch runs as many passes or many tiny ops (``gated_merge.cpp``: a
gated block's merge; ``gate_head.cpp``: the training gate; ``gate_decide.cpp``: the fused
inference gate; ``sparse_rows.cpp``: sparse execution's gather and merged write-back;
``resnet_forward.cpp``: a fused model's inference pass without Python between its operations).
Each has a PyTorch reference that
gives the same values and runs wherever the kernels cannot: no compiler, another device or
dtype, ``torch.compile`` tracing, a Python dispatch mode. Building needs a C++ compiler and
ninja, takes under a minute once per machine and PyTorch version, and is cached where PyTorch
caches extensions (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``).
``AIGNET_KERNELS=off`` turns them off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

CSRC = Path(__file__).resolve().parent / "csrc"
_loaded: dict[str, ModuleType | None] = {}  # "module": the built extension or None


def enabled() -> bool:
    """Whether compiled kernels may be used (``AIGNET_KERNELS`` is not ``off``/``0``)."""
    return os.environ.get("AIGNET_KERNELS", "on").lower() not in ("off", "0", "false")


def usable(t: Tensor) -> ModuleType | None:
    """The kernels if they may run on ``t`` now, else None.

    They need a CPU tensor and plain eager execution: under ``torch.compile`` tracing or a
    Python dispatch mode (``FlopCounterMode``, fake tensors) the reference ops run, so those
    tools see every operation.
    """
    if (t.device.type != "cpu" or torch.compiler.is_compiling()
            or torch._C._len_torch_dispatch_stack() > 0):
        return None
    return load()


def _cpu_flags() -> list[str]:
    """Vector-unit flags when this CPU has AVX2 and FMA (the build is cached per flag set)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((ln for ln in info.splitlines() if ln.startswith("flags")), "").split())
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= flags else []


def _module_name(cflags: list[str]) -> str:
    """Extension name keyed by the sources, flags and PyTorch version: a change builds afresh."""
    digest = hashlib.sha256(" ".join(cflags).encode() + torch.__version__.encode())
    for path in sorted(CSRC.iterdir()):  # headers included
        digest.update(path.name.encode() + path.read_bytes())
    return f"aignet_kernels_{digest.hexdigest()[:12]}"


def load() -> ModuleType | None:
    """The compiled kernels (``csrc/*.cpp``), or None where they cannot be used or built.

    Built once per process (and cached on disk across processes); a failed build warns once
    and the callers fall back to their PyTorch reference.
    """
    if "module" in _loaded:
        return _loaded["module"]
    _loaded["module"] = None
    if not enabled() or shutil.which("ninja") is None or shutil.which("c++") is None:
        return None
    from torch.utils import cpp_extension

    sources = sorted(CSRC.glob("*.cpp"))
    cflags = ["-O3", "-fopenmp", *_cpu_flags()]
    module = _module_name(cflags)
    build = Path(cpp_extension.get_default_build_root()) / module
    if not (build / f"{module}.so").is_file():
        print("aignet: compiling the CPU kernels (once per machine, under a minute)...",
              file=sys.stderr, flush=True)
    try:
        build.mkdir(parents=True, exist_ok=True)
        _loaded["module"] = cpp_extension.load(
            module, [str(p) for p in sources], extra_cflags=cflags, extra_ldflags=["-fopenmp"],
            extra_include_paths=[str(CSRC)], build_directory=str(build))
    except Exception as err:  # noqa: BLE001 - any build failure means: use the reference ops
        warnings.warn(f"aignet: the CPU kernels did not build ({type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}); using the slower "
                      "PyTorch ops. Set AIGNET_KERNELS=off to skip the build.",
                      RuntimeWarning, stacklevel=2)
    return _loaded["module"]
