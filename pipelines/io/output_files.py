"""Small artifact files (JSON, .npz, PNG) written and read through Beam's filesystems (local or gs://)."""

from __future__ import annotations

import os
import uuid

from apache_beam.io.filesystems import FileSystems


def is_local(path: str) -> bool:
    return "://" not in path


def write_bytes(path: str, data: bytes, mime_type: str = "application/octet-stream") -> None:
    """Write a whole small file; locally through a temporary name and an atomic rename."""
    if is_local(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        with FileSystems.create(path, mime_type=mime_type) as f:
            f.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def exists(path: str) -> bool:
    return FileSystems.exists(path)
