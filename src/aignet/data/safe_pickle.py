"""A restricted unpickler for data files (CIFAR's python layout): plain data and numpy arrays only.

``pickle.load`` on a downloaded file can run arbitrary code; this one refuses every global except
the few numpy constructors that rebuild an array, so a malicious file fails with a clear error.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

# (module, name) pairs a numpy array pickle needs; everything else is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    # Python 2 pickles of byte strings read with encoding="bytes"/"latin1" go through this.
    ("_codecs", "encode"),
}


class UnsafePickleError(ValueError):
    """The file asks to import something other than plain data."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refusing to load {module}.{name}: data files may only hold "
                                "plain containers, numbers, strings, bytes and numpy arrays")


def safe_load(path: str | Path, encoding: str = "bytes") -> object:
    """Unpickle ``path`` allowing only plain data and numpy arrays.

    Raises:
        UnsafePickleError: the pickle references any other global (e.g. os.system).
        ValueError: the file is truncated or not a pickle.
    """
    data = Path(path).read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as err:
        raise ValueError(f"{path}: corrupt or not a pickle file ({err})") from None
