"""The model registry: atomic compare-and-swap pointer, immutable versions, promote/rollback, `ae-tf models`,
and `ae-tf encode --model REGISTRY` encoding with the champion. Real tiny models, real files, real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest
from conftest import train_tiny

from ae_tf.registry.pointer import LocalPointer, PointerConflict, PointerError, Snapshot, open_pointer
from ae_tf.registry.registry import POINTER, PromotionConflict, Registry, RegistryError, resolve_model_dir
from ae_tf_cli import main as cli


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, vector_data, vector_model):
    """Two tiny models on the same data: (good, poor) model directories, never moved (tests copy them).
    The good one is the session's `vector_model`, so only the poor one is trained here."""
    poor = str(tmp_path_factory.mktemp("registry_models") / "poor")
    train_tiny(f"{vector_data}/*.parquet", "vec", poor, epochs=1, learning_rate=1e-5, seed=1, min_steps=0)
    return vector_model[0], poor


def register(registry: Registry, model_dir: str) -> str:
    """Copy a model into the registry's staging area, then add it (add_version moves its argument)."""
    staged = os.path.join(registry.new_staging_dir(), "model")
    shutil.copytree(model_dir, staged)
    version = registry.add_version(staged)
    registry.discard_staging(os.path.dirname(staged))
    return version


def pointer_bytes(root) -> bytes:
    with open(os.path.join(root, POINTER), "rb") as f:
        return f.read()


# ---- the pointer -------------------------------------------------------------------------------------

def test_local_pointer_swap_is_compare_and_swap(tmp_path):
    pointer = LocalPointer(str(tmp_path / "champion.json"))
    empty = pointer.read()
    assert empty == Snapshot(None, 0)
    first = pointer.swap(empty, {"champion": "a"})
    assert first.generation == 1 and pointer.read().data["champion"] == "a"
    with pytest.raises(PointerConflict, match="changed since it was read"):
        pointer.swap(empty, {"champion": "b"})  # decided against generation 0, which is gone
    assert pointer.read().data["champion"] == "a"
    assert pointer.swap(first, {"champion": "b"}).generation == 2
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_only_one_of_many_processes_wins_the_same_swap(tmp_path):
    """Six processes swap against the same snapshot at the same instant: exactly one may succeed."""
    path = tmp_path / "champion.json"
    go = tmp_path / "go"
    code = textwrap.dedent(f"""
        import os, sys, time
        from ae_tf.registry.pointer import LocalPointer, PointerConflict, Snapshot
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        try:
            LocalPointer({str(path)!r}).swap(Snapshot(None, 0), {{"champion": sys.argv[1]}})
            print("won")
        except PointerConflict:
            print("lost")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, f"v{i}"], stdout=subprocess.PIPE, text=True)
             for i in range(6)]
    time.sleep(0.5)  # let every process reach the starting line
    go.touch()
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["lost"] * 5 + ["won"]
    winner = f"v{results.index('won')}"
    assert json.loads(path.read_text()) == {"champion": winner, "generation": 1}


def test_schemes_without_compare_and_swap_are_refused():
    with pytest.raises(PointerError, match="s3:// has no atomic compare-and-swap"):
        open_pointer("s3://bucket/registry/champion.json")


# ---- the registry ------------------------------------------------------------------------------------

def test_versions_promote_rollback_and_stale_decisions(tmp_path, two_models):
    good, poor = two_models
    registry = Registry(str(tmp_path / "registry"))
    assert registry.versions() == [] and registry.state().champion is None
    with pytest.raises(RegistryError, match="no champion yet"):
        registry.champion_dir()

    v_poor = register(registry, poor)
    v_good = register(registry, good)
    assert registry.versions() == sorted([v_poor, v_good])
    assert register(registry, good) == v_good  # the same model again: one version
    assert len(registry.versions()) == 2
    assert not (tmp_path / "registry" / "_staging").exists()

    before = registry.state()
    registry.promote(v_poor, "first", expected=before)
    with pytest.raises(PromotionConflict, match="changed since it was read"):
        registry.promote(v_good, "decided against the empty registry", expected=before)
    assert registry.state().champion == v_poor

    state = registry.promote(v_good, "better")
    assert (state.champion, state.previous, state.generation) == (v_good, (v_poor,), 2)
    assert resolve_model_dir(registry.root) == registry.version_dir(v_good)

    state = registry.rollback()
    assert (state.champion, state.previous) == (v_poor, ())
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()
    with pytest.raises(RegistryError, match="no version 'nope'"):
        registry.promote("nope", "typo")
    with pytest.raises(RegistryError, match="not a version name"):
        registry.version_dir("../escape")


def test_versions_are_never_modified_once_registered(tmp_path, two_models):
    good, _ = two_models
    registry = Registry(str(tmp_path / "registry"))
    version = register(registry, good)
    directory = registry.version_dir(version)
    files = {os.path.relpath(os.path.join(d, f), directory): os.stat(os.path.join(d, f)).st_mtime_ns
             for d, _, names in os.walk(directory) for f in names}
    registry.write_report(version, {"decision": "kept"})
    registry.promote(version, "by hand")
    after = {os.path.relpath(os.path.join(d, f), directory): os.stat(os.path.join(d, f)).st_mtime_ns
             for d, _, names in os.walk(directory) for f in names}
    assert after == files
    assert registry.read_report(version) == {"decision": "kept"}  # the report lives beside, not inside
    # Half-finished things in versions/ or _staging/ are never listed as versions.
    (tmp_path / "registry" / "versions" / f"{version}.tmp-1234").mkdir()
    (tmp_path / "registry" / "_staging" / "run" / "model").mkdir(parents=True)
    assert registry.versions() == [version]


def test_models_command_line(tmp_path, two_models, capsys):
    good, poor = two_models
    root = str(tmp_path / "registry")
    registry = Registry(root)
    v_poor, v_good = register(registry, poor), register(registry, good)

    assert cli(["models", "list", "--registry", root]) == 0
    assert "champion: none" in capsys.readouterr().out
    assert cli(["models", "show", "--registry", root]) == 2
    assert "no champion yet" in capsys.readouterr().err

    assert cli(["models", "promote", "--registry", root, v_poor]) == 0
    assert cli(["models", "promote", "--registry", root, v_good, "--reason", "looks better"]) == 0
    capsys.readouterr()
    assert cli(["models", "list", "--registry", root, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["champion"] == v_good and listing["previous"] == [v_poor]
    assert [(r["version"], r["champion"]) for r in listing["versions"]] == sorted(
        [(v_poor, False), (v_good, True)])

    assert cli(["models", "show", "--registry", root]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == v_good and shown["champion"] is True
    assert shown["metadata"]["model_version"] == v_good

    assert cli(["models", "rollback", "--registry", root]) == 0
    assert f"champion: {v_poor}" in capsys.readouterr().out
    assert json.loads(pointer_bytes(root))["champion"] == v_poor

    assert cli(["models", "promote", "--registry", root, "20990101T000000Z-missing"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no version '20990101T000000Z-missing'" in err and len(err.splitlines()) == 1


def test_encode_with_a_registry_uses_and_records_the_champion(tmp_path, two_models, vector_data):
    from pipelines.encode import run

    good, poor = two_models
    root = str(tmp_path / "registry")
    registry = Registry(root)
    register(registry, poor)
    v_good = register(registry, good)

    with pytest.raises(RegistryError, match="no champion yet"):
        run(["--model", root, "--input", f"{vector_data}/*.parquet", "--output", str(tmp_path / "none")])

    registry.promote(v_good, "test")
    out = str(tmp_path / "out")
    manifest = run(["--model", root, "--input", f"{vector_data}/*.parquet", "--output", out,
                    "--progress-interval", "0"])
    assert manifest["model_version"] == v_good
    assert manifest["model_dir"] == registry.version_dir(v_good)
    shard = sorted(p for p in os.listdir(out) if p.startswith("part-"))[0]
    metadata = pq.read_schema(os.path.join(out, shard)).metadata
    assert metadata[b"ae_tf.model_version"].decode() == v_good
