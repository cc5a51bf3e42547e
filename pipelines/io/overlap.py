"""Run the stages of one worker's batch loop at the same time: reading, the model, writing.

Beam runs a fused stage (read -> encode -> write) one element at a time in one thread, so a worker would
read, then encode, then write, each waiting for the other. pyarrow's Parquet decoding and zstd encoding
and TensorFlow all release the GIL, so a reading thread a batch ahead and a writing thread a batch behind
let the three overlap (what makes the pipeline faster than a plain sequential loop). Each holds at most
`depth` batches, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield `items`, produced by a background thread up to `depth` items ahead; its errors re-raise here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # handed to the consumer, which re-raises it in its own thread
            put(_Failure(err))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="ae_tf-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundCalls:
    """Runs `fn(item)` for each submitted item in order on one background thread, `depth` items queued at
    most; `close()` waits for the last one. An error in `fn` is re-raised by the next submit or close."""

    def __init__(self, fn: Callable[[T], None], depth: int = 1, name: str = "ae_tf-writer"):
        self._fn = fn
        self._slots: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._slots.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as err:  # re-raised in the submitting thread
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, item: T) -> None:
        self._raise()
        self._slots.put(item)

    def close(self) -> None:
        self._slots.put(_DONE)
        self._thread.join()
        self._raise()
