"""An embeddings store that stays current: the read side, the layout and the manifests (no Beam here;
`ae-tf refresh` in pipelines.refresh writes it).

Layout of a store ROOT (local or gs://, every access through ae_tf.storage):
    CURRENT                               JSON pointer: model version, folder, rows, files (shards), history
    versions/<model_version>[-<dtype>]/   one model version's embedding Parquet: a valid `encode` output
        part-<key>-<n>.parquet            the shards of one input file (key: its path and fingerprint)
        _SUCCESS                          the manifest of the last complete run into this folder
        _manifests/<run>.json             the same manifest, per run; CURRENT names the one it stands for
        _temporary/<run>/                 a running refresh's own encode output (never read)
    _refresh.lock                         held by the running refresh (one at a time)

Why this shape: readers follow CURRENT and read exactly the files it lists, so what a reader sees changes
only when CURRENT is swapped, by the same compare-and-swap as the registry's champion (ae_tf.registry.pointer),
after the new folder is complete. A killed refresh leaves CURRENT where it was; the next one removes
what the killed one left. Two model versions never share a folder: their spaces differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from ae_tf import storage
from ae_tf.contracts import SUCCESS
from ae_tf.errors import InvalidInput
from ae_tf.registry.pointer import PointerError, Snapshot, open_pointer

FORMAT = "ae-tf-store/1"
POINTER = "CURRENT"
VERSIONS = "versions"
MANIFESTS = "_manifests"
LOCK = "_refresh.lock"


class StoreError(InvalidInput):
    """A store that cannot be read or written as asked; the message names the path."""


def is_store(path: str) -> bool:
    """A directory with a CURRENT pointer (a glob or a Parquet file never is)."""
    if any(ch in path for ch in "*?[") or path.endswith(".parquet"):
        return False
    try:
        return storage.isfile(storage.join(path, POINTER))
    except storage.StorageError:
        return False


def pointer(root: str):
    return open_pointer(storage.join(root, POINTER))


def folder_name(model_version: str, dtype: str = "float32") -> str:
    """One folder per model version and code type (float32 keeps the bare version name)."""
    return model_version if dtype == "float32" else f"{model_version}-{dtype}"


@dataclasses.dataclass(frozen=True)
class Current:
    """What CURRENT says; `files` are relative to ROOT."""

    model_version: str
    folder: str
    manifest: str
    rows: int
    files: tuple[str, ...]
    embedding_dtype: str = "float32"
    history: tuple[str, ...] = ()
    run_id: str = ""
    updated_at: str = ""

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> Current | None:
        data = snapshot.data
        if not data:
            return None
        try:
            return cls(data["model_version"], data["folder"], data["manifest"], int(data["rows"]),
                       tuple(data["files"]), data.get("embedding_dtype", "float32"), tuple(data.get("history", ())),
                       data.get("run_id", ""), data.get("updated_at", ""))
        except (KeyError, TypeError, ValueError) as err:
            raise StoreError(f"CURRENT: not a store pointer (missing or bad field {err})") from None

    @property
    def name(self) -> str:
        """The folder's name under versions/ (`folder` is relative to ROOT: versions/NAME)."""
        return self.folder.rstrip("/").rsplit("/", 1)[-1]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {"format": FORMAT, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}


def read_current(root: str) -> tuple[Current | None, Snapshot]:
    try:
        snapshot = pointer(root).read()
    except PointerError as err:
        raise StoreError(str(err)) from None
    return Current.from_snapshot(snapshot), snapshot


def current_files(root: str) -> list[str]:
    """The shard files of the current view (full paths), in CURRENT's order."""
    current, _ = read_current(root)
    if current is None:
        raise StoreError(f"{root}: store has no CURRENT version yet; run `ae-tf refresh --store {root}`")
    return [storage.join(root, *f.split("/")) for f in current.files]


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input Parquet file as seen by a run: what decides whether it must be encoded again."""

    path: str
    size: int
    rows: int
    fingerprint: str  # sha256 of the size and the Parquet footer (schema, row groups, column statistics)
    mtime_ns: int | None = None  # local files
    generation: int | None = None  # gs:// objects

    @property
    def key(self) -> str:
        """Names its shards: a changed file (new fingerprint) never overwrites the shards of the old one."""
        return hashlib.sha256(f"{self.path}\0{self.fingerprint}".encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict) -> InputFile:
        return cls(data["path"], int(data["size"]), int(data["rows"]), data["fingerprint"],
                   data.get("mtime_ns"), data.get("generation"))


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """An input file's entry in a version manifest: its shards (names in the folder) and row counts."""

    input: InputFile
    shards: tuple[tuple[str, int], ...]  # (file name in the folder, rows)
    rows_out: int
    rows_rejected: int
    run_id: str  # the run that encoded it

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self.input), "shards": [{"file": n, "rows": r} for n, r in self.shards],
                "rows_out": self.rows_out,
                "rows_rejected": self.rows_rejected, "encoded_in_run": self.run_id}

    @classmethod
    def from_dict(cls, data: dict) -> StoredFile:
        return cls(InputFile.from_dict(data), tuple((s["file"], int(s["rows"])) for s in data["shards"]),
                   int(data["rows_out"]),
                   int(data.get("rows_rejected", 0)), data.get("encoded_in_run", ""))


def _footer(path: str, size: int) -> bytes:
    """The Parquet footer (metadata) bytes, read from the end of the file."""
    if size < 12:
        raise StoreError(f"{path}: not a Parquet file ({size} bytes)")
    with storage.open_read(path) as f:
        f.seek(size - 8)
        tail = f.read(8)
        if tail[4:] != b"PAR1":
            raise StoreError(f"{path}: not a Parquet file (no PAR1 footer)")
        length = int.from_bytes(tail[:4], "little")
        if length + 12 > size:
            raise StoreError(f"{path}: truncated Parquet file (footer of {length} bytes in {size})")
        f.seek(size - 8 - length)
        return f.read(length) + tail


def describe_input(path: str) -> InputFile:
    """Size, rows, fingerprint and mtime/generation of one input file, from its footer only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    mtime_ns = generation = None
    if storage.is_gcs(path):
        bucket, name = storage.split_gcs(path)
        blob = storage.gcs_client().bucket(bucket).get_blob(name)
        if blob is None:
            raise StoreError(f"{path}: not found")
        size, generation = int(blob.size), int(blob.generation)
    else:
        stat = os.stat(path)
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
    footer = _footer(path, size)
    try:
        rows = pq.read_metadata(pa.BufferReader(b"PAR1" + footer)).num_rows
    except pa.ArrowException as err:
        raise StoreError(f"{path}: unreadable Parquet footer ({str(err).splitlines()[0]})") from None
    fingerprint = hashlib.sha256(size.to_bytes(8, "little") + footer).hexdigest()[:32]
    return InputFile(path, size, int(rows), fingerprint, mtime_ns, generation)


@dataclasses.dataclass(frozen=True)
class RefreshPlan:
    """What one run does for its model version: encode `todo`, keep `reuse`, leave `dropped` out."""

    todo: tuple[InputFile, ...]
    reuse: tuple[StoredFile, ...]
    dropped: tuple[StoredFile, ...]

    @property
    def rows_to_encode(self) -> int:
        return sum(f.rows for f in self.todo)

    @property
    def changes_anything(self) -> bool:
        return bool(self.todo or self.dropped)


def plan_refresh(inputs: list[InputFile], base: list[StoredFile]) -> RefreshPlan:
    """Files new or changed (another fingerprint) since `base` are encoded; unchanged ones are reused."""
    stored = {f.input.path: f for f in base}
    todo, reuse = [], []
    for item in inputs:
        old = stored.get(item.path)
        if old is not None and old.input.fingerprint == item.fingerprint:
            reuse.append(old)
        else:
            todo.append(item)
    current = {f.path for f in inputs}
    dropped = [f for f in base if f.input.path not in current or f.input.path in {t.path for t in todo}]
    return RefreshPlan(tuple(todo), tuple(reuse), tuple(dropped))


def version_dir(root: str, folder: str) -> str:
    return storage.join(root, VERSIONS, folder)


def read_manifest(path: str) -> dict:
    try:
        return json.loads(storage.read_text(path))
    except ValueError:
        raise StoreError(f"{path}: not valid JSON") from None


def stored_files(manifest: dict) -> list[StoredFile]:
    return [StoredFile.from_dict(f) for f in manifest.get("files", [])]


def base_manifest(root: str, current: Current | None, folder: str) -> dict | None:
    """The manifest a run into `folder` builds on: CURRENT's when it points there, else the folder's own
    `_SUCCESS` (a kept older version, e.g. after a rollback); None when the folder starts empty."""
    if current is not None and current.name == folder:
        return read_manifest(storage.join(root, *current.manifest.split("/")))
    success = storage.join(version_dir(root, folder), SUCCESS)
    return read_manifest(success) if storage.isfile(success) else None


def remove_unreferenced(directory: str, keep: set[str]) -> int:
    """Delete the shards in `directory` that no manifest in `keep` references (leftovers); returns how many."""
    if not storage.isdir(directory):
        return 0
    removed = 0
    for name in storage.listdir(directory):
        if name.startswith("part-") and name.endswith(".parquet") and name not in keep:
            storage.remove(storage.join(directory, name))
            removed += 1
    return removed


def prune(root: str, keep: list[str]) -> list[str]:
    """Remove every version folder not in `keep` (complete or left by a killed run); returns the removed."""
    versions = storage.join(root, VERSIONS)
    if not storage.isdir(versions):
        return []
    removed = [name for name in storage.listdir(versions) if name not in keep]
    for name in removed:
        storage.rmtree(storage.join(versions, name))
    return removed
