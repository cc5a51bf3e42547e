"""One refresh at a time per store: a lock held for the whole run.

Why a lock and not only the compare-and-swap of CURRENT: a refresh edits its version folder before it
swaps CURRENT (new shards in, leftovers out); two at once would delete each other's shards. CURRENT's
compare-and-swap stays as the last guard (a lock taken over after its expiry, a hand edit).

  local  `fcntl.flock` on ROOT/_refresh.lock, non-blocking: the kernel drops it when the process dies,
         so a SIGKILLed refresh never blocks the next one.
  gs://  ROOT/_refresh.lock created only if absent (`if_generation_match=0`) and deleted at the end. A run
         killed before the end leaves it: it expires `ttl_s` after it was written (default 6 h); the message
         names the object to delete sooner.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Iterator

from ae_tf import storage
from ae_tf.errors import InvalidInput
from ae_tf.registry.store import LOCK

DEFAULT_TTL_S = 6 * 3600


class StoreBusy(InvalidInput):
    """Another refresh holds the store; the message says which and what to do."""


def _holder(run_id: str) -> str:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return json.dumps({"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "started_at": now})


def _describe(raw: str) -> str:
    try:
        info = json.loads(raw)
        return f"run {info['run_id']} (pid {info['pid']} on {info['host']}, started {info['started_at']})"
    except (ValueError, KeyError, TypeError):
        return "another run"


@contextlib.contextmanager
def refresh_lock(root: str, run_id: str, ttl_s: float = DEFAULT_TTL_S) -> Iterator[None]:
    """Hold ROOT's refresh lock for the block; raises StoreBusy at once when another refresh holds it."""
    path = storage.join(root, LOCK)
    if storage.is_gcs(path):
        with _gcs_lock(path, root, run_id, ttl_s):
            yield
        return
    import fcntl

    os.makedirs(root, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise StoreBusy(f"{root}: another refresh is running ({_describe(f.read())}); "
                            "this one stops without changes") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(_holder(run_id))
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _gcs_lock(path: str, root: str, run_id: str, ttl_s: float) -> Iterator[None]:
    from google.api_core import exceptions

    bucket, name = storage.split_gcs(path)
    existing = storage.gcs_client().bucket(bucket).get_blob(name)
    if existing is not None:
        written = existing.updated or dt.datetime.now(dt.timezone.utc)
        age = (dt.datetime.now(dt.timezone.utc) - written).total_seconds()
        if age < ttl_s:
            raise StoreBusy(f"{root}: another refresh is running ({_describe(existing.download_as_text())}); "
                            f"this one stops without changes (if that run is dead, delete {path})")
        with contextlib.suppress(exceptions.NotFound, exceptions.PreconditionFailed):
            existing.delete(if_generation_match=existing.generation)  # expired: take it over
    blob = storage.gcs_blob(path)
    try:
        blob.upload_from_string(_holder(run_id), content_type="application/json", if_generation_match=0)
    except exceptions.PreconditionFailed:
        raise StoreBusy(f"{root}: another refresh took the lock just now; this one stops without changes") from None
    try:
        yield
    finally:
        with contextlib.suppress(exceptions.NotFound, exceptions.PreconditionFailed):
            blob.delete(if_generation_match=blob.generation)
