"""`ae-tf retrain`: promote only a better challenger, never corrupt the registry, never double-promote.

Every run trains a real tiny model on real Parquet into a real registry on disk and goes through the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import write_vector_dataset

from ae_tf.commands.retrain import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_KEPT, EXIT_PROMOTED
from ae_tf.registry.registry import POINTER, STAGING, Registry
from ae_tf_cli import main as cli

TINY = ["--hidden", "16", "--batch-size", "64", "--seed", "0"]
GOOD = [*TINY, "--epochs", "6", "--learning-rate", "0.003"]
POOR = [*TINY, "--epochs", "1", "--learning-rate", "0.00001"]


def retrain(registry: str, data: str, *flags: str) -> int:
    return cli(["retrain", "--registry", registry, "--input", f"{data}/*.parquet", *flags])


def snapshot(root: str) -> tuple[bytes, list[str]]:
    """What must not change: the pointer's bytes and the registered versions."""
    with open(os.path.join(root, POINTER), "rb") as f:
        return f.read(), Registry(root).versions()


@pytest.fixture(scope="module")
def good_registry(tmp_path_factory, vector_data):
    """A registry whose champion is a well-trained model (first retrain: no champion -> promoted)."""
    root = str(tmp_path_factory.mktemp("good") / "registry")
    assert retrain(root, vector_data, "--features", "vec", "--code-size", "3", *GOOD) == EXIT_PROMOTED
    return root


@pytest.fixture
def copy_of(tmp_path):
    def copy(root: str) -> str:
        target = str(tmp_path / "registry")
        shutil.copytree(root, target)
        return target
    return copy


def test_first_retrain_promotes_and_writes_its_report(good_registry):
    registry = Registry(good_registry)
    state = registry.state()
    assert registry.versions() == [state.champion] and state.generation == 1
    report = registry.read_report(state.champion)
    assert report["decision"] == "promoted" and report["champion"] is None
    assert report["reason"] == "no champion yet"
    assert report["sample"]["rows"] > 50 and report["challenger"]["error"] > 0
    assert os.path.exists(registry.version_dir(state.champion) + ".evaluation.json")
    assert not os.path.exists(os.path.join(good_registry, STAGING))


def test_worse_challenger_is_kept_and_the_pointer_is_untouched(good_registry, copy_of, vector_data, capsys):
    root = copy_of(good_registry)
    pointer, versions = snapshot(root)
    assert retrain(root, vector_data, *POOR) == EXIT_KEPT  # features and code size come from the champion
    assert snapshot(root)[0] == pointer
    registry = Registry(root)
    new = [v for v in registry.versions() if v not in versions]
    assert len(new) == 1  # the challenger is kept as a version, for inspection
    report = registry.read_report(new[0])
    assert report["decision"] == "kept"
    assert report["challenger"]["error"] > report["champion"]["error"]
    assert report["champion"]["version"] == registry.state().champion
    assert "decision   kept" in capsys.readouterr().out


def test_better_challenger_is_promoted_and_rollback_restores_the_old_champion(tmp_path, vector_data):
    root = str(tmp_path / "registry")
    assert retrain(root, vector_data, "--features", "vec", "--code-size", "3", *POOR) == EXIT_PROMOTED
    poor = Registry(root).state().champion
    assert retrain(root, vector_data, *GOOD, "--min-improvement", "0.05") == EXIT_PROMOTED
    registry = Registry(root)
    state = registry.state()
    assert state.champion != poor and state.previous == (poor,) and state.generation == 2
    report = registry.read_report(state.champion)
    assert report["improvement"] >= 0.05 and report["champion"]["version"] == poor

    assert cli(["models", "rollback", "--registry", root]) == 0
    assert registry.state().champion == poor


def test_crash_in_the_middle_of_training_leaves_the_registry_unchanged(good_registry, copy_of, vector_data,
                                                                        monkeypatch, capsys):
    import ae_tf.model.callbacks

    root = copy_of(good_registry)
    before = snapshot(root)
    original = ae_tf.model.callbacks.EpochSummary.on_epoch_end

    def crash_in_epoch_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise RuntimeError("simulated crash in epoch 2")

    monkeypatch.setattr(ae_tf.model.callbacks.EpochSummary, "on_epoch_end", crash_in_epoch_two)
    assert retrain(root, vector_data, *GOOD) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "simulated crash in epoch 2" in err and "Traceback" not in err
    assert snapshot(root) == before
    assert not os.path.exists(os.path.join(root, STAGING))


def test_killed_retrain_leaves_the_registry_unchanged(good_registry, copy_of, vector_data):
    """SIGKILL mid-training: no cleanup code runs, yet the champion and the versions are as before."""
    root = copy_of(good_registry)
    before = snapshot(root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ae_tf_cli", "retrain", "--registry", root, "--input", f"{vector_data}/*.parquet",
         *TINY, "--epochs", "500", "--patience", "500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = os.path.join(root, STAGING)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until training writes its run files
        runs = os.listdir(staging) if os.path.isdir(staging) else []
        run_dirs = [os.path.join(staging, r, "run") for r in runs]
        if any(os.path.isdir(d) and os.listdir(d) for d in run_dirs):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the retrain ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert snapshot(root) == before
    assert os.listdir(staging)  # the abandoned work is only in _staging, which nothing reads
    assert Registry(root).versions() == before[1]


def test_two_concurrent_retrains_do_not_both_promote(tmp_path, vector_data, monkeypatch):
    """Both start on an empty registry, both judge their challenger worth promoting, and both try to
    promote at the same instant (a barrier): the pointer's compare-and-swap lets exactly one win."""
    import ae_tf.model.train
    from ae_tf.registry.registry import Registry as RealRegistry
    from ae_tf.registry.retrain import RetrainConfig, run_retrain

    fit = ae_tf.model.train.train
    one_fit_at_a_time = threading.Lock()  # Keras' global seed and graph state: fit serially, race the rest
    monkeypatch.setattr(ae_tf.model.train, "train", lambda config: _locked(one_fit_at_a_time, fit, config))
    barrier = threading.Barrier(2, timeout=120)
    promote = RealRegistry.promote

    def promote_together(self, *args, **kwargs):
        barrier.wait()
        return promote(self, *args, **kwargs)

    monkeypatch.setattr(RealRegistry, "promote", promote_together)
    root = str(tmp_path / "registry")
    outcomes, errors = [], []

    def one(seed: int):
        config = RetrainConfig(registry=root, input=f"{vector_data}/*.parquet", features="vec", code_size=3,
                               train={"hidden": "16", "epochs": 2, "batch_size": 64, "seed": seed})
        try:
            outcomes.append(run_retrain(config))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert sorted(o.decision for o in outcomes) == ["kept", "promoted"]
    winner = next(o for o in outcomes if o.decision == "promoted")
    loser = next(o for o in outcomes if o.decision == "kept")
    state = Registry(root).state()
    assert state.champion == winner.version and state.generation == 1 and state.previous == ()
    assert "another run changed the champion" in loser.report["reason"]
    assert sorted(Registry(root).versions()) == sorted([winner.version, loser.version])


def _locked(lock, fn, *args):
    with lock:
        return fn(*args)


def test_latest_partitions_and_then_encode(tmp_path):
    """Train on the newest 2 of 3 daily partitions; after the promotion, encode with the new champion."""
    data = tmp_path / "events"
    for day, seed in (("2026-06-01", 5), ("2026-06-02", 6), ("2026-06-03", 7)):
        write_vector_dataset(data / f"dt={day}", rows=400, files=1, seed=seed)
    root, out = str(tmp_path / "registry"), str(tmp_path / "embeddings")
    code = cli(["retrain", "--registry", root, "--input", f"{data}/dt=*", "--latest-partitions", "2",
                "--features", "vec", "--code-size", "3", *TINY, "--epochs", "2",
                "--then-encode", str(data / "dt=2026-06-03"), out, "--encode-options=--progress-interval 0"])
    assert code == EXIT_PROMOTED
    registry = Registry(root)
    champion = registry.state().champion
    inputs = registry.read_report(champion)["training"]["inputs"]
    assert [os.path.basename(os.path.dirname(p)) for p in inputs] == ["dt=2026-06-02", "dt=2026-06-03"]
    with open(os.path.join(out, "_SUCCESS")) as f:
        manifest = json.load(f)
    assert manifest["model_version"] == champion and manifest["rows_out"] == 400


def test_bad_arguments_fail_fast_with_one_line(tmp_path, good_registry, vector_data, capsys):
    empty = str(tmp_path / "empty")
    assert retrain(empty, vector_data) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "needs --features and --code-size" in err and len(err.splitlines()) == 1
    assert not os.path.exists(empty)

    before = snapshot(good_registry)
    assert retrain(good_registry, vector_data, "--features", "name") == EXIT_BAD_INPUT
    assert "differs from the champion's vec" in capsys.readouterr().err
    assert retrain(good_registry, vector_data, "--min-improvement", "1.5") == EXIT_BAD_INPUT
    assert cli(["retrain", "--registry", good_registry, "--input", str(tmp_path / "nothing" / "*.parquet")]) \
        == EXIT_BAD_INPUT
    assert "no input file matches" in capsys.readouterr().err
    assert snapshot(good_registry) == before


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli(["retrain", "--help"])
    text = capsys.readouterr().out
    for line in ("0  promoted", "1  failed", "2  bad arguments", "3  kept", "4  promoted, but"):
        assert line in text
