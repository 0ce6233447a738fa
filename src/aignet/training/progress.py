"""A dependency-free progress line with ETA for long loops (stderr)."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of ``total`` steps: a redrawn bar on a terminal, else a line every ``every_s``.

    Args:
        total: steps expected.
        label: prefix, e.g. ``"epoch 3/15"``.
        enabled: False on non-zero ranks.
        every_s: seconds between lines when stderr is not a terminal.
    """

    def __init__(self, total: int, label: str, enabled: bool = True, every_s: float = 10.0,
                 start: int = 0) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.every_s = every_s
        self.tty = sys.stderr.isatty()
        self.start_time = time.perf_counter()
        self.start_step = start
        self.last_print = 0.0

    def update(self, step: int, **metrics: float) -> None:
        """Report that ``step`` of ``total`` steps are done, with metrics to show."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.tty and now - self.last_print < self.every_s and step < self.total:
            return
        self.last_print = now
        done = max(step - self.start_step, 1)
        eta = (now - self.start_time) / done * (self.total - step)
        width = 20
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        text = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        line = f"{self.label} [{bar}] {step}/{self.total} {text} ETA {format_seconds(eta)}"
        end = "\r" if self.tty and step < self.total else "\n"
        print(line, end=end, file=sys.stderr, flush=True)
