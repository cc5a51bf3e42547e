"""Local copies of gs:// model directories, so `tf.saved_model.load` always reads a local disk.

Why: TF's own GCS filesystem ignores the storage emulator and needs its own credentials; a local copy
loads the same way everywhere (a laptop, the tests, each Dataflow worker process). A copy is keyed by the
path and the generation of the directory's marker (its metadata JSON, written last), so a model replaced
under the same path is fetched again, and a finished copy is reused by every later load on the machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid

from ae_tf import storage
from ae_tf.errors import InputNotFound

log = logging.getLogger(__name__)


def local_model_dir(model_dir: str, marker: str) -> str:
    """`model_dir` itself when local; else a complete local copy of it (downloaded once per version)."""
    if storage.is_local(model_dir):
        return model_dir
    model_dir = model_dir.rstrip("/")
    generation = storage.generation(storage.join(model_dir, marker))
    if generation is None:
        raise InputNotFound(f"{model_dir}: no {marker}; not a complete model directory")
    key = hashlib.sha256(model_dir.encode()).hexdigest()[:16]
    root = os.path.join(storage.cache_root(), "models")
    final = os.path.join(root, f"{os.path.basename(model_dir)}-{key}-{generation}")
    if os.path.isfile(os.path.join(final, marker)):
        return final
    os.makedirs(root, exist_ok=True)
    tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        log.info("copying %s to %s", model_dir, final)
        storage.download_dir(model_dir, tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same copy first: use theirs
            if not os.path.isfile(os.path.join(final, marker)):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
