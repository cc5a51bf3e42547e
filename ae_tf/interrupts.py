"""Ctrl-C and SIGTERM: leave within seconds with one line and exit 130 (SIGINT) or 143 (SIGTERM).

Why not plain KeyboardInterrupt: Beam wraps it (`RuntimeError: KeyboardInterrupt [while running ...]`,
a long traceback and exit 1), and a normal interpreter exit then waits in `threading._shutdown` for
Beam's non-daemon threads (its state sampler), which may never end. So:
  * the first signal raises `Interrupted` in the main thread: `finally` blocks clean up as usual
    (temporary directories, staging), and nothing reaches a publish step: those check `raise_if_interrupted`
    right before the one write that publishes (a `_SUCCESS`, a version's marker, a pointer swap);
  * `handled()` around a command turns any exception raised after a signal, however wrapped, into
    the one line, flushes, and ends the process with `os._exit` (no waiting for other threads);
  * a watchdog thread woken by the signal itself (`signal.set_wakeup_fd`, so even a main thread stuck
    in C code cannot delay it) does the same after GRACE_SECONDS, and a second signal does it at once.
`AE_TF_PAUSE_AT=NAME` makes `pause_point(NAME)` announce itself on stderr and sleep, so that tests can
send a signal at a chosen moment (planning, the first batches, publishing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
GRACE_SECONDS = 3.0
PAUSE_ENV = "AE_TF_PAUSE_AT"

_lock = threading.Lock()
_received: list[int] = []  # signals seen, in order
_published: list[str] = []  # what this run published (named in the line if a signal comes after)
_prog = "ae-tf"
_left = False
_depth = 0  # handled() nesting: only the outermost installs


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT or SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def received() -> int | None:
    """The first signal received (None: none)."""
    with _lock:
        return _received[0] if _received else None


def raise_if_interrupted() -> None:
    """Call right before a publishing write: an interrupted run publishes nothing."""
    signum = received()
    if signum is not None:
        raise Interrupted(signum)


def note_published(path: str) -> None:
    """Record a publishing write that has completed (so a later interrupt's line does not deny it)."""
    with _lock:
        _published.append(path)


def leave(signum: int | None = None) -> None:
    """Print the one line (once, whichever thread gets here first), flush, and end the process now."""
    global _left
    signum = signum or received() or signal.SIGINT
    with _lock:
        first, _left = not _left, True
    if first:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            done = f"after publishing {_published[-1]}" if _published else "nothing was published"
            sys.stderr.write(f"{_prog}: interrupted by {signal.Signals(signum).name}; {done}\n")
            sys.stderr.flush()
        os._exit(EXIT_CODES.get(signum, 130))
    while True:  # the other thread is printing and exiting
        time.sleep(1)


def _on_signal(signum, _frame) -> None:
    with _lock:
        _received.append(signum)
        first = len(_received) == 1
    if first:
        raise Interrupted(signum)
    leave(_received[0])


def _watchdog(read_fd: int) -> None:
    """Woken by the C-level signal handler; leaves if the main thread has not within the grace period."""
    import select

    deadline = None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([read_fd], [], [], timeout)
        if not ready:
            leave()
        data = os.read(read_fd, 64)
        if not data:  # the command finished: handled() closed the pipe
            os.close(read_fd)
            return
        signals = [s for s in data if s in EXIT_CODES]
        if not signals:
            continue
        if deadline is not None or len(signals) > 1:
            leave()  # a second signal: at once
        deadline = time.monotonic() + GRACE_SECONDS


@contextlib.contextmanager
def handled(prog: str = "ae-tf") -> Iterator[None]:
    """Run a command; after a signal, any way it ends becomes the one line and the signal's exit code.

    Only in the main thread and only the outermost call installs anything; the previous handlers come
    back when the command returns (a test runner keeps its own Ctrl-C).
    """
    global _prog, _depth
    if threading.current_thread() is not threading.main_thread() or _depth:
        yield
        return
    _prog, _depth = prog, 1
    with _lock:
        _received.clear()
        _published.clear()
    previous = {signum: signal.getsignal(signum) for signum in EXIT_CODES}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watchdog, args=(read_fd,), name="ae-tf-interrupts", daemon=True).start()
    for signum in EXIT_CODES:
        signal.signal(signum, _on_signal)
    try:
        yield
        if received() is not None:
            leave()
    except BaseException:
        if received() is not None:
            leave()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)
        _depth = 0


def pause_point(name: str, seconds: float = 60.0) -> None:
    """For tests: with AE_TF_PAUSE_AT=name, say so on stderr and wait here (a signal ends the wait)."""
    if os.environ.get(PAUSE_ENV) != name:
        return
    sys.stderr.write(f"{_prog}: paused at {name}\n")
    sys.stderr.flush()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
