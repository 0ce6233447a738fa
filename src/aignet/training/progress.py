"""Progress bars with ETA and execution rate for long loops (tqdm, on stderr)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """Progress of ``total`` steps: tqdm's bar (step, ETA, rate) plus the metrics given.

    On a terminal the bar is redrawn in place; in a log file it is written at most every
    ``every_s`` seconds.

    Args:
        total: steps expected.
        label: prefix, e.g. ``"epoch 3/15"``.
        enabled: False on non-zero ranks.
        every_s: seconds between updates when stderr is not a terminal.
        start: steps already done (a resumed epoch).
    """

    def __init__(self, total: int, label: str, enabled: bool = True, every_s: float = 10.0,
                 start: int = 0) -> None:
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=start, desc=label, disable=not enabled,
                        file=sys.stderr, mininterval=0.5 if tty else every_s, ascii=not tty,
                        dynamic_ncols=tty, leave=True)
        self.step = start

    def update(self, step: int, **metrics: float) -> None:
        """Report that ``step`` of ``total`` steps are done, with metrics to show."""
        if metrics:
            self.bar.set_postfix({k: f"{float(v):.4g}" for k, v in metrics.items()},
                                 refresh=False)
        self.bar.update(step - self.step)
        self.step = step
        if step >= self.bar.total:
            self.bar.close()

    def close(self) -> None:
        """End the bar early (e.g. a limited evaluation)."""
        self.bar.close()
