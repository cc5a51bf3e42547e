"""The champion pointer: one small JSON file, replaced atomically and only by compare-and-swap.

Why compare-and-swap: a retrain reads the pointer when it starts and decides an hour later; it must not
overwrite a promotion made meanwhile. Every write names the snapshot it was decided against, and a write
against a stale snapshot fails with `PointerConflict` instead of silently winning.

How, per storage:
  local path  `swap` holds an exclusive `fcntl.flock` on `<pointer>.lock` while it re-reads the pointer,
              compares its `generation`, writes a temporary file, fsyncs it and `os.replace`s it over the
              pointer (atomic on POSIX: readers see the old file or the new one, never a mix). The kernel
              drops the lock when its process dies, so a crash cannot leave a stale lock behind. Readers
              take no lock.
  gs://       one object write is already atomic; the compare is GCS's own precondition
              `if_generation_match` (0 = the object must not exist yet), through google-cloud-storage
              (through ae_tf.storage's client, which honours STORAGE_EMULATOR_HOST), imported only for
              gs:// paths.
  other       refused: without a compare-and-swap primitive two promotions could both win.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid

from ae_tf.errors import InvalidInput

FIELD = "generation"  # counts successful swaps; the local compare-and-swap token


class PointerError(InvalidInput):
    """A pointer that cannot be read or written; the message names the path."""


class PointerConflict(PointerError):
    """The pointer changed since it was read: the caller's decision is stale."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one read saw: the JSON (None when there is no pointer yet) and the store's swap token."""

    data: dict | None
    token: int = 0

    @property
    def generation(self) -> int:
        return int(self.data.get(FIELD, 0)) if self.data else 0


def _decode(raw: bytes, path: str) -> dict:
    try:
        data = json.loads(raw)
    except ValueError:
        raise PointerError(f"{path}: not valid JSON; restore it from a backup or rewrite it with "
                           f"`ae-tf models promote`") from None
    if not isinstance(data, dict):
        raise PointerError(f"{path}: expected a JSON object")
    return data


def _encode(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


class LocalPointer:
    """A pointer file on a local (POSIX) filesystem; see the module docstring."""

    def __init__(self, path: str):
        self.path = path
        self.lock_path = f"{path}.lock"

    def read(self) -> Snapshot:
        try:
            with open(self.path, "rb") as f:
                data = _decode(f.read(), self.path)
        except FileNotFoundError:
            return Snapshot(None, 0)
        return Snapshot(data, int(data.get(FIELD, 0)))

    @contextlib.contextmanager
    def _locked(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            raise PointerError(f"{self.path}: local registries need POSIX file locks (Linux, macOS)") from None
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def swap(self, expected: Snapshot, data: dict) -> Snapshot:
        """Replace the pointer with `data` if it is still what `expected` saw; raises PointerConflict."""
        from ae_tf.interrupts import note_published, raise_if_interrupted

        raise_if_interrupted()
        with self._locked():
            current = self.read()
            if current.generation != expected.generation:
                raise PointerConflict(f"{self.path}: changed since it was read "
                                      f"(generation {expected.generation} -> {current.generation})")
            new = {**data, FIELD: current.generation + 1}
            directory = os.path.dirname(self.path) or "."
            tmp = os.path.join(directory, f".{os.path.basename(self.path)}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                with open(tmp, "wb") as f:
                    f.write(_encode(new))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)  # the rename itself survives a power cut
            finally:
                os.close(fd)
        note_published(self.path)
        return Snapshot(new, new[FIELD])


class GcsPointer:
    """A pointer object on Google Cloud Storage, swapped with a generation precondition."""

    def __init__(self, path: str, client=None):
        self.path = path
        bucket, _, self.name = path[len("gs://"):].partition("/")
        if not bucket or not self.name:
            raise PointerError(f"{path}: expected gs://BUCKET/PATH")
        self._bucket_name = bucket
        self._client = client

    def _bucket(self):
        if self._client is None:
            from ae_tf.storage import gcs_client

            self._client = gcs_client()
        return self._client.bucket(self._bucket_name)

    def read(self) -> Snapshot:
        from google.api_core import exceptions

        blob = self._bucket().get_blob(self.name)
        if blob is None:
            return Snapshot(None, 0)
        generation = int(blob.generation)  # (a download may refresh blob's fields from its response)
        try:  # the bytes of exactly the generation we report
            raw = blob.download_as_bytes(if_generation_match=generation)
        except (exceptions.PreconditionFailed, exceptions.NotFound):
            return self.read()  # replaced between the two calls: read the newer one
        return Snapshot(_decode(raw, self.path), generation)

    def swap(self, expected: Snapshot, data: dict) -> Snapshot:
        from google.api_core import exceptions

        from ae_tf.interrupts import note_published, raise_if_interrupted

        new = {**data, FIELD: expected.generation + 1}
        blob = self._bucket().blob(self.name)
        raise_if_interrupted()
        try:
            blob.upload_from_string(_encode(new), content_type="application/json",
                                    if_generation_match=expected.token)
        except exceptions.PreconditionFailed:
            raise PointerConflict(f"{self.path}: changed since it was read (object generation "
                                  f"{expected.token} is no longer current)") from None
        note_published(self.path)
        return Snapshot(new, int(blob.generation or 0))


def open_pointer(path: str, client=None) -> LocalPointer | GcsPointer:
    """The pointer store for `path`; `client` is a google.cloud.storage.Client for gs:// (default: ae_tf.storage's)."""
    if path.startswith("gs://"):
        return GcsPointer(path, client)
    if "://" in path:
        scheme = path.split("://", 1)[0]
        raise PointerError(f"{path}: {scheme}:// has no atomic compare-and-swap here; "
                           f"use a local path or gs:// for the registry")
    return LocalPointer(path)
