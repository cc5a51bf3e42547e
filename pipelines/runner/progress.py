"""Progress of a local run: rows done, rows per second and time left, every few seconds.

The local runner executes DoFns in this process, so reading DoFns add their row counts to a process-wide
tally that a reporter thread prints. On Dataflow the same DoFns also count Beam metrics (`rows_read`,
`rows_written`, `rows_rejected` in the `ae_tf` namespace), which the Dataflow console shows; the tally
there is simply never printed.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_lock = threading.Lock()
_done: dict[str, int] = {}
_expected: dict[str, int] = {}


def add(key: str, rows: int) -> None:
    """Called by DoFns once per batch (cheap: one lock, one addition)."""
    with _lock:
        _done[key] = _done.get(key, 0) + rows


def done(key: str) -> int:
    with _lock:
        return _done.get(key, 0)


def expect(key: str, rows: int) -> None:
    """Called when a pipeline is built, once per read of the data: a pipeline that reads its input
    twice (fit, then apply) expects twice the rows."""
    with _lock:
        _expected[key] = _expected.get(key, 0) + rows


def expected(key: str) -> int:
    with _lock:
        return _expected.get(key, 0)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_line(label: str, rows_done: int, total: int, elapsed: float) -> str:
    rate = rows_done / elapsed if elapsed > 0 else 0.0
    share = f" ({rows_done / total:.0%})" if total else ""
    eta = f", {format_seconds((total - rows_done) / rate)} left" if rate > 0 and total >= rows_done else ""
    return f"{label}: {rows_done:,} / {total:,} rows{share}, {rate:,.0f} rows/s{eta}"


class ProgressReporter:
    """Prints a progress line every `interval` seconds while a local pipeline runs (a daemon thread)."""

    def __init__(self, key: str, label: str, total_rows: int | None = None, interval: float = 3.0,
                 stream: TextIO | None = None):
        self.key = key
        self.label = label
        self.total = total_rows  # None: what the pipeline's reads announced through `expect`
        self.interval = interval
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"progress-{key}", daemon=True)
        self._started = 0.0

    def __enter__(self) -> ProgressReporter:
        self._started = time.perf_counter()
        with _lock:
            _done[self.key] = 0
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        with _lock:
            _done.pop(self.key, None)
            _expected.pop(self.key, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            total = self.total if self.total is not None else expected(self.key)
            line = progress_line(self.label, done(self.key), total, time.perf_counter() - self._started)
            print(line, file=self.stream, flush=True)


def local_progress(key: str, label: str, local: bool, interval: float):
    """A ProgressReporter for local runs with a positive interval; a no-op context otherwise."""
    import contextlib

    if not local or interval <= 0:
        return contextlib.nullcontext()
    return ProgressReporter(key, label, None, interval)
