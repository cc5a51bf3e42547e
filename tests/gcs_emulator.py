"""A real GCS API on localhost for the gs:// tests: the `gcp-storage-emulator` package in a subprocess.

`gcs_emulator` (session) starts it on a free port and stops it at the end; `gcs_root` (per test) points
`STORAGE_EMULATOR_HOST` at it, for this process and every subprocess the test starts, and returns a fresh
gs:// prefix in the emulator's bucket. Nothing here fakes the storage API: google-cloud-storage, Beam's
GCS filesystem and our own storage layer all talk HTTP to the emulator.

What the emulator does not do: it ignores generation preconditions (`ifGenerationMatch`), so the
registry's compare-and-swap cannot be proven against it (`emulator_honours_preconditions` checks).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

BUCKET = "ae-tf-test"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_emulator(bucket: str = BUCKET, timeout: float = 30.0) -> Iterator[str]:
    """Start `python -m gcp_storage_emulator` in memory with `bucket`; yields its http://host:port."""
    pytest.importorskip("gcp_storage_emulator", reason="pip install 'ae-tf[test]' for the GCS emulator")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory", "--default-bucket", bucket, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    host = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.closing(socket.socket()) as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"GCS emulator did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    with running_emulator() as host:
        yield host


@pytest.fixture
def gcs_root(gcs_emulator, monkeypatch, tmp_path) -> str:
    """A fresh gs:// prefix on the emulator; STORAGE_EMULATOR_HOST set for the test and its subprocesses,
    and a per-test model cache (so a copy staged by one test is never reused by another)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "ae-tf-test")
    monkeypatch.setenv("AE_TF_CACHE_DIR", str(tmp_path / "ae-tf-cache"))
    return f"gs://{BUCKET}/{uuid.uuid4().hex[:10]}"


def upload_tree(local_dir: str, target: str) -> list[str]:
    """Copy every file under a local directory to gs:// (through the same client the code uses)."""
    from ae_tf import storage

    uploaded = []
    for root, _dirs, files in os.walk(local_dir):
        for name in sorted(files):
            path = os.path.join(root, name)
            remote = storage.join(target, *os.path.relpath(path, local_dir).split(os.sep))
            storage.copy_file(path, remote)
            uploaded.append(remote)
    return uploaded


def emulator_honours_preconditions(root: str) -> bool:
    """Does the emulator refuse a create-only write (ifGenerationMatch=0) over an existing object?"""
    from google.api_core import exceptions

    from ae_tf import storage

    blob = storage.gcs_blob(f"{root}/precondition-probe")
    blob.upload_from_string(b"1")
    try:
        storage.gcs_blob(f"{root}/precondition-probe").upload_from_string(b"2", if_generation_match=0)
    except exceptions.PreconditionFailed:
        return True
    return False
