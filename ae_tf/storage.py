"""Files on a local disk or on gs://, through one small interface (everything in ae_tf that is not Beam IO).

Why not tf.io.gfile: TF's own GCS client ignores `STORAGE_EMULATOR_HOST`, cannot be tested offline and has no
conditional write. gs:// goes through google-cloud-storage (installed with apache-beam[gcp]): it honours
`STORAGE_EMULATOR_HOST` (then anonymous credentials are used, so nothing waits for a credential look-up),
and it offers the generation preconditions that the registry's compare-and-swap needs. Local paths stay
plain `os` calls. Other schemes are refused with a one-line error.

Object stores have no directories: a "directory" is a prefix, and one exists while an object lies under it.
Publishing a directory (`publish_dir`) uploads every file and a marker file last, so a reader that checks
the marker never sees half a directory. Model directories on gs:// are loaded from a local copy
(ae_tf.model.model_cache).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import shutil
import threading
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from ae_tf.errors import InputNotFound, UserError

GS = "gs://"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"

_clients: dict[int, object] = {}
_client_lock = threading.Lock()


class StorageError(UserError, OSError):
    """A path this layer cannot serve; the message names it."""


def is_gcs(path: str) -> bool:
    return path.startswith(GS)


def is_local(path: str) -> bool:
    return "://" not in path


def _check(path: str) -> None:
    if not is_local(path) and not is_gcs(path):
        raise StorageError(f"{path}: only local paths and gs:// are supported")


def join(root: str, *parts: str) -> str:
    return posixpath.join(root.rstrip("/"), *parts) if not is_local(root) else os.path.join(root, *parts)


def parent(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if not is_local(path) else os.path.dirname(path.rstrip("/"))


def split_gcs(path: str) -> tuple[str, str]:
    """gs://BUCKET/NAME -> (BUCKET, NAME); NAME may be empty (the bucket itself)."""
    bucket, _, name = path[len(GS):].partition("/")
    if not bucket:
        raise StorageError(f"{path}: expected gs://BUCKET/PATH")
    return bucket, name


def gcs_client():
    """One google-cloud-storage client per process (Beam workers fork and spawn); anonymous on an emulator."""
    pid = os.getpid()
    with _client_lock:
        client = _clients.get(pid)
        if client is None:
            from google.cloud import storage

            if os.environ.get(EMULATOR_ENV):
                from google.auth.credentials import AnonymousCredentials

                client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "emulator",
                                        credentials=AnonymousCredentials())
            else:  # default credentials; object calls need no project (None: the library does not guess one)
                client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
            _clients[pid] = client
    return client


def gcs_blob(path: str):
    bucket, name = split_gcs(path)
    if not name:
        raise StorageError(f"{path}: names a bucket, not an object")
    return gcs_client().bucket(bucket).blob(name)


def _prefix(path: str) -> str:
    name = split_gcs(path)[1]
    return name.rstrip("/") + "/" if name.rstrip("/") else ""


def _list(path: str, delimiter: str | None = None, max_results: int | None = None):
    bucket, _ = split_gcs(path)
    return gcs_client().list_blobs(bucket, prefix=_prefix(path), delimiter=delimiter, max_results=max_results)


# ---- queries ------------------------------------------------------------------------------------------

def isfile(path: str) -> bool:
    _check(path)
    if is_local(path):
        return os.path.isfile(path)
    return bool(split_gcs(path)[1]) and gcs_blob(path).exists()


def isdir(path: str) -> bool:
    """Locally a directory; on gs:// a prefix with at least one object under it."""
    _check(path)
    if is_local(path):
        return os.path.isdir(path)
    return any(True for _ in _list(path, max_results=1))


def exists(path: str) -> bool:
    return isfile(path) or isdir(path)


def size(path: str) -> int:
    _check(path)
    if is_local(path):
        return os.path.getsize(path)
    blob = gcs_client().bucket(split_gcs(path)[0]).get_blob(split_gcs(path)[1])
    if blob is None:
        raise InputNotFound(f"{path}: not found")
    return int(blob.size)


def generation(path: str) -> int | None:
    """The object's GCS generation (changes on every write); None when absent or local."""
    if not is_gcs(path):
        return None
    blob = gcs_client().bucket(split_gcs(path)[0]).get_blob(split_gcs(path)[1])
    return None if blob is None else int(blob.generation)


def listdir(path: str) -> list[str]:
    """Names directly inside a directory (sub-directories without a trailing slash), sorted."""
    _check(path)
    if is_local(path):
        return sorted(os.listdir(path))
    iterator = _list(path, delimiter="/")
    prefix = _prefix(path)
    names = {blob.name[len(prefix):] for blob in iterator if blob.name != prefix}
    names |= {p[len(prefix):].rstrip("/") for p in iterator.prefixes}
    return sorted(n for n in names if n)


def walk_files(path: str) -> Iterator[str]:
    """Every file under a directory, recursively (full paths)."""
    _check(path)
    if is_local(path):
        for root, _dirs, files in os.walk(path):
            for name in files:
                yield os.path.join(root, name)
        return
    bucket = split_gcs(path)[0]
    for blob in _list(path):
        if not blob.name.endswith("/"):
            yield f"{GS}{bucket}/{blob.name}"


def glob(pattern: str) -> list[str]:
    """Paths matching a shell pattern (`*` stays within one path segment); on gs:// a pattern that matches a
    prefix of some object names that "directory", as tf.io.gfile did."""
    _check(pattern)
    if is_local(pattern):
        import glob as local_glob

        return sorted(local_glob.glob(pattern))
    bucket, name = split_gcs(pattern)
    wanted = name.rstrip("/").split("/")
    literal = name[:min([name.find(c) for c in "*?[" if c in name] or [len(name)])]
    found = set()
    for blob in gcs_client().list_blobs(bucket, prefix=literal):
        parts = blob.name.split("/")
        if len(parts) >= len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=False)):
            found.add(f"{GS}{bucket}/" + "/".join(parts[:len(wanted)]))
    return sorted(found)


# ---- reading and writing ------------------------------------------------------------------------------

def open_read(path: str) -> BinaryIO:
    """A seekable binary reader (pyarrow reads Parquet footers and row groups from it)."""
    _check(path)
    if is_local(path):
        return open(path, "rb")
    blob = gcs_blob(path)
    if not blob.exists():
        raise InputNotFound(f"{path}: not found")
    return blob.open("rb")


def read_bytes(path: str) -> bytes:
    _check(path)
    if is_local(path):
        with open(path, "rb") as f:
            return f.read()
    from google.api_core import exceptions

    try:
        return gcs_blob(path).download_as_bytes()
    except exceptions.NotFound:
        raise InputNotFound(f"{path}: not found") from None


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def write_bytes(path: str, data: bytes | str, content_type: str = "application/octet-stream") -> None:
    """Write a whole file atomically: locally a temporary name then a rename; on gs:// one upload."""
    _check(path)
    data = data.encode() if isinstance(data, str) else data
    if is_local(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    gcs_blob(path).upload_from_string(data, content_type=content_type)


def makedirs(path: str) -> None:
    """Locally mkdir -p; on gs:// nothing (prefixes need no creating)."""
    _check(path)
    if is_local(path):
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    _check(path)
    if is_local(path):
        os.remove(path)
    else:
        gcs_blob(path).delete()


def rmtree(path: str) -> None:
    """Remove a directory (every object under the prefix); absent is fine."""
    _check(path)
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    from google.api_core import exceptions

    for blob in list(_list(path)):
        with contextlib.suppress(exceptions.NotFound):  # removed meanwhile by someone else
            blob.delete()


def copy_file(source: str, target: str) -> None:
    """Any to any (local, gs://); the target is written atomically."""
    if is_local(source) and is_gcs(target):
        gcs_blob(target).upload_from_filename(source)
    elif is_gcs(source) and is_local(target):
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        gcs_blob(source).download_to_filename(tmp)
        os.replace(tmp, target)
    elif is_gcs(source) and is_gcs(target):
        src = gcs_blob(source)
        dst = gcs_blob(target)
        dst.bucket.copy_blob(src, dst.bucket, dst.name)
    else:
        write_bytes(target, read_bytes(source))


def publish_dir(local_dir: str, target: str, marker: str) -> None:
    """Copy a finished local directory to `target` with `marker` (a relative path) written last.

    Locally the directory is renamed into place in one step (`target` must not exist). On gs:// any
    leftovers under `target` (an interrupted earlier publish) are removed first, then every file is
    uploaded and the marker last: `target` counts as present only once its marker is.
    """
    _check(target)
    from ae_tf import interrupts

    if is_local(target):
        os.makedirs(os.path.dirname(target.rstrip("/")) or ".", exist_ok=True)
        interrupts.raise_if_interrupted()
        os.rename(local_dir, target)
        interrupts.note_published(target)
        return
    if not os.path.isfile(os.path.join(local_dir, marker)):
        raise StorageError(f"{local_dir}: has no {marker} to publish last")
    if isfile(join(target, marker)):
        remove(join(target, marker))  # retract first: readers stop trusting the old contents
    rmtree(target)
    files = sorted(os.path.relpath(p, local_dir) for p in walk_files(local_dir))
    for relative in [f for f in files if f != marker]:
        copy_file(os.path.join(local_dir, relative), join(target, *relative.split(os.sep)))
    interrupts.raise_if_interrupted()  # an interrupted run publishes nothing
    copy_file(os.path.join(local_dir, marker), join(target, *marker.split("/")))
    interrupts.note_published(target)


def download_dir(source: str, local_dir: str) -> None:
    """Every object under a gs:// prefix into a new local directory."""
    prefix = source.rstrip("/") + "/"
    for path in walk_files(source):
        copy_file(path, os.path.join(local_dir, *path[len(prefix):].split("/")))


def cache_root() -> str:
    """Where gs:// model directories are staged and remote runs keep local checkpoints:
    $AE_TF_CACHE_DIR, else ~/.cache/ae-tf."""
    root = os.environ.get("AE_TF_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ae-tf")
    os.makedirs(root, exist_ok=True)
    return root
