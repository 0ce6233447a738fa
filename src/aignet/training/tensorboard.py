"""Optional TensorBoard logging of what ``log.jsonl`` holds (``train.tensorboard=true``).

Needs the ``tensorboard`` extra (``pip install -e ".[tensorboard]"``); events go to
``OUT/tensorboard/``. Scalars are the losses, errors, learning rates, MACs and images/s; each
layer's execution rate is a scalar under ``rates/train/layer_NN`` and ``rates/val/layer_NN``.
"""

from __future__ import annotations

from pathlib import Path


class TensorBoardLog:
    """Writes each epoch's log entry as TensorBoard scalars."""

    def __init__(self, out: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("train.tensorboard=true needs the tensorboard package: "
                             "pip install -e '.[tensorboard]'") from None
        self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, entry: dict) -> None:
        """Every number of ``entry`` (lists: one scalar per element) at step ``entry['epoch']``."""
        epoch = entry["epoch"]
        for key, value in entry.items():
            if key in ("epoch", "rank_checksums"):
                continue
            if isinstance(value, (int, float)):
                self.writer.add_scalar(_tag(key), value, epoch)
            elif isinstance(value, list) and key.endswith("layer_rates"):
                split = key.split("_")[0]
                for i, rate in enumerate(value):
                    self.writer.add_scalar(f"rates/{split}/layer_{i:02d}", rate, epoch)
            elif isinstance(value, list) and key == "lr":
                for i, lr in enumerate(value):
                    self.writer.add_scalar(f"lr/group_{i}", lr, epoch)
        self.writer.flush()


def _tag(key: str) -> str:
    """``val_top1_error`` -> ``val/top1_error``: one TensorBoard section per split."""
    head, _, rest = key.partition("_")
    return f"{head}/{rest}" if head in ("train", "val") and rest else key
