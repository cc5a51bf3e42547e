"""A versioned model store with one champion, local or gs:// (files through ae_tf.storage).

Layout of a registry directory:
    versions/<version>/                  a model directory (the export contract), never modified once there
    versions/<version>.evaluation.json   how `ae-tf retrain` judged it (beside the version, not inside)
    champion.json                        the pointer: current champion, the stack of previous ones, reason
    _staging/<run>/                      work of a running retrain; never read as a version

Why this shape: readers (the encode pipeline, `models list`) only ever follow the pointer or list complete
versions, so a crash at any moment leaves nothing half-visible. A version enters `versions/` by one rename
of a finished model directory; the champion changes only by a compare-and-swap of the pointer
(ae_tf.registry.pointer), so two retrains that decided at the same time cannot both promote. `<version>` is the
model's own `model_version`, so the version the encode pipeline records is the registry's version name.

On gs:// there is no rename: a version is trained in a local staging directory and uploaded object by
object with its metadata JSON last (ae_tf.storage.publish_dir); a version counts (is listed, can be
promoted) only once that marker is there, and the pointer is only swapped after the upload has finished.
The pointer itself is swapped with a GCS generation precondition (ae_tf.registry.pointer).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
import uuid

from ae_tf import storage
from ae_tf.errors import InvalidInput
from ae_tf.model.export import MARKER, ModelDirError, model_dir_exists, read_metadata
from ae_tf.registry.pointer import PointerConflict, PointerError, Snapshot, open_pointer

log = logging.getLogger(__name__)

FORMAT = "ae-tf-registry/1"
POINTER = "champion.json"
VERSIONS = "versions"
STAGING = "_staging"
REPORT_SUFFIX = ".evaluation.json"
MAX_PREVIOUS = 100  # rollback depth kept in the pointer
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RegistryError(InvalidInput):
    """A registry that cannot do what was asked; the message names the path or version."""


class PromotionConflict(RegistryError):
    """The champion changed between reading it and promoting: the decision was made against a stale one."""


def _join(root: str, *parts: str) -> str:
    return storage.join(root, *parts)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class ChampionState:
    """The pointer as read: champion (None before the first promotion), rollback stack, and the snapshot
    a later promote/rollback must still match."""

    champion: str | None
    previous: tuple[str, ...]
    generation: int
    updated_at: str | None
    reason: str | None
    snapshot: Snapshot

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> ChampionState:
        data = snapshot.data or {}
        return cls(data.get("champion"), tuple(data.get("previous", ())), snapshot.generation,
                   data.get("updated_at"), data.get("reason"), snapshot)


class Registry:
    """Operations on one registry directory; every write is atomic (see the module docstring)."""

    def __init__(self, root: str, pointer_client=None):
        self.root = root.rstrip("/") or root
        self._pointer = open_pointer(_join(self.root, POINTER), pointer_client)

    # ---- reading ---------------------------------------------------------------------------------
    @staticmethod
    def looks_like_registry(path: str) -> bool:
        """True for a directory with the registry layout (and not itself a model directory)."""
        if storage.isfile(_join(path, "saved_model.pb")):
            return False
        return storage.isfile(_join(path, POINTER)) or storage.isdir(_join(path, VERSIONS))

    def version_dir(self, version: str) -> str:
        if not _VERSION_NAME.match(version):
            raise RegistryError(f"{version!r}: not a version name (letters, digits, '.', '_', '-')")
        return _join(self.root, VERSIONS, version)

    def report_path(self, version: str) -> str:
        return self.version_dir(version) + REPORT_SUFFIX

    def versions(self) -> list[str]:
        """Registered versions, oldest first (names start with their UTC creation time)."""
        directory = _join(self.root, VERSIONS)
        if not storage.isdir(directory):
            return []
        names = [n for n in storage.listdir(directory)
                 if _VERSION_NAME.match(n) and not n.endswith(".json") and ".tmp-" not in n]
        if storage.is_local(directory):
            return sorted(n for n in names if os.path.isdir(_join(directory, n)))
        return sorted(n for n in names if model_dir_exists(_join(directory, n)))  # complete uploads only

    def state(self) -> ChampionState:
        try:
            return ChampionState.from_snapshot(self._pointer.read())
        except PointerError as err:
            raise RegistryError(str(err)) from None

    def champion_dir(self) -> str:
        """The current champion's model directory; a clear error when there is none."""
        champion = self.state().champion
        if champion is None:
            raise RegistryError(f"{self.root}: registry has no champion yet; run `ae-tf retrain` or "
                                f"`ae-tf models promote`")
        return self.version_dir(champion)

    def metadata(self, version: str) -> dict:
        try:
            return read_metadata(self.version_dir(version))
        except ModelDirError:
            if version not in self.versions():
                raise RegistryError(f"{self.root}: no version {version!r}; `ae-tf models list` shows them") from None
            raise

    def read_report(self, version: str) -> dict | None:
        path = self.report_path(version)
        if not storage.isfile(path):
            return None
        return json.loads(storage.read_bytes(path))

    # ---- writing ---------------------------------------------------------------------------------
    def new_staging_dir(self) -> str:
        """A fresh local directory for one retrain's work: inside a local registry (so the final move is a
        rename), in a temporary directory for gs:// (the version is uploaded from there)."""
        run = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        if not storage.is_local(self.root):
            return tempfile.mkdtemp(prefix=f"ae-tf-staging-{run}-")
        path = _join(self.root, STAGING, run)
        os.makedirs(path, exist_ok=True)
        return path

    def discard_staging(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)
        parent = _join(self.root, STAGING)
        if storage.is_local(parent):
            # Another run may be removing it too, or have just started inside it: both are fine.
            with contextlib.suppress(OSError):
                os.rmdir(parent)  # only succeeds when empty

    def add_version(self, model_dir: str) -> str:
        """Move a finished model directory into `versions/<model_version>` with one rename; returns the version.

        The same weights exported in the same second give the same version name: that version is then
        already registered, and the duplicate is discarded.
        """
        version = read_metadata(model_dir)["model_version"]
        target = self.version_dir(version)
        storage.makedirs(_join(self.root, VERSIONS))
        if model_dir_exists(target):
            if read_metadata(target)["model_version"] != version:  # pragma: no cover - corrupt registry
                raise RegistryError(f"{target}: exists but holds another model")
            log.info("version %s is already registered; discarding the duplicate", version)
            storage.rmtree(model_dir)
            return version
        try:
            storage.publish_dir(model_dir, target, MARKER)
        except OSError:
            # Lost a race to register the very same model (same weights, same second): keep the winner's.
            if model_dir_exists(target) and read_metadata(target)["model_version"] == version:
                storage.rmtree(model_dir)
                return version
            raise
        storage.rmtree(model_dir)
        return version

    def write_report(self, version: str, report: dict) -> str:
        """The evaluation report beside the version (written to a temporary name, then renamed)."""
        path = self.report_path(version)
        storage.write_bytes(path, json.dumps(report, indent=2, sort_keys=True), content_type="application/json")
        return path

    def _swap(self, expected: ChampionState, champion: str, previous: list[str], reason: str) -> ChampionState:
        data = {"format": FORMAT, "champion": champion, "previous": previous[-MAX_PREVIOUS:],
                "updated_at": utc_now(), "reason": reason}
        try:
            return ChampionState.from_snapshot(self._pointer.swap(expected.snapshot, data))
        except PointerConflict as err:
            raise PromotionConflict(f"{err}; read the champion again and decide again") from None
        except PointerError as err:
            raise RegistryError(str(err)) from None

    def promote(self, version: str, reason: str, expected: ChampionState | None = None) -> ChampionState:
        """Make `version` the champion, if the pointer is still `expected` (default: as read now).

        The outgoing champion goes on the rollback stack. Raises PromotionConflict when someone else
        changed the champion since `expected` was read.
        """
        self.metadata(version)  # a complete, loadable-looking version, or a clear error
        expected = expected or self.state()
        if expected.champion == version:
            return expected
        previous = list(expected.previous)
        if expected.champion is not None:
            previous.append(expected.champion)
        state = self._swap(expected, version, previous, reason)
        log.info("champion of %s is now %s (generation %d): %s", self.root, version, state.generation, reason)
        return state

    def rollback(self, reason: str = "rollback", expected: ChampionState | None = None) -> ChampionState:
        """Restore the previous champion (pop the stack); the outgoing one stays as a version."""
        expected = expected or self.state()
        if not expected.previous:
            raise RegistryError(f"{self.root}: no previous champion to roll back to")
        *rest, back = expected.previous
        state = self._swap(expected, back, rest, f"{reason} (from {expected.champion})")
        log.info("rolled %s back to %s (generation %d)", self.root, back, state.generation)
        return state


def resolve_model_dir(path: str) -> str:
    """A model directory stays as it is; a registry directory becomes its champion's version directory.

    Resolved once, at launch: a job keeps the model it started with even if the champion changes meanwhile.
    """
    if Registry.looks_like_registry(path):
        return Registry(path).champion_dir()
    return path
