"""Ctrl-C and SIGTERM during encode, reduce, dedup, train and retrain: one line, exit 130 / 143 within 5 s,
nothing published, and the same command run again completes.

Each case runs the real command in a subprocess with AE_TF_PAUSE_AT naming a moment (ae_tf.interrupts):
the command says "paused at MOMENT" on stderr and waits there, and the test sends the signal then.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROWS

from ae_tf_cli import main

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def interrupt_at(argv: list[str], moment: str, signum: int, timeout: float = 240) -> tuple[int, float, str]:
    """Run `ae-tf ARGV` until it pauses at `moment`, send `signum`; (exit code, seconds to exit, stderr)."""
    env = {**os.environ, "AE_TF_PAUSE_AT": moment, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "ae_tf_cli", *argv], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    lines, deadline = [], time.monotonic() + timeout
    for line in process.stderr:
        lines.append(line)
        if line.strip() == f"ae-tf: paused at {moment}":
            break
        assert time.monotonic() < deadline, "never reached the pause point"
    else:
        process.wait()
        pytest.fail(f"exited ({process.returncode}) before pausing at {moment}:\n{''.join(lines)[-3000:]}")
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"no exit within 30 s of {signal.Signals(signum).name} at {moment}")
    return process.returncode, time.monotonic() - sent, process.stderr.read()


def check_clean(code: int, seconds: float, stderr: str, signum: int) -> None:
    name = signal.Signals(signum).name
    assert code == EXIT[signum], stderr[-3000:]
    assert seconds < 5, f"{seconds:.1f}s to exit"
    assert "Traceback" not in stderr and "RuntimeError" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"ae-tf: interrupted by {name}; nothing was published"
    print(f"{name:<8} exit {code} in {seconds:.2f}s")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, vector_model, vector_data) -> str:
    from pipelines import encode

    out = str(tmp_path_factory.mktemp("interrupts") / "encoded")
    encode.run(["--model", vector_model[0], "--input", vector_data, "--output", out, "--progress-interval", "0"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("moment", "signum"), [("planning", signal.SIGINT), ("batches", signal.SIGTERM),
                                                ("publishing", signal.SIGINT)])
def test_encode_interrupted_publishes_nothing_and_reruns(moment, signum, tmp_path, vector_model, vector_data):
    out = str(tmp_path / "out")
    argv = ["encode", "--model", vector_model[0], "--input", vector_data, "--output", out, "--progress-interval", "0"]
    check_clean(*interrupt_at(argv, moment, signum), signum)
    assert not os.path.exists(os.path.join(out, "_SUCCESS"))
    assert main(argv) == 0  # the same command again: an interrupted run's leftovers are replaced
    with open(os.path.join(out, "_SUCCESS")) as f:
        assert json.load(f)["rows_out"] == ROWS


@pytest.mark.slow
def test_reduce_and_dedup_interrupted(tmp_path, encoded):
    reduced = str(tmp_path / "reduced")
    check_clean(*interrupt_at(["reduce", "--input", encoded, "--output", reduced, "--components", "2",
                               "--progress-interval", "0"], "batches", signal.SIGTERM), signal.SIGTERM)
    assert not os.path.exists(os.path.join(reduced, "_SUCCESS"))
    deduped = str(tmp_path / "dedup")
    argv = ["dedup", "--input", encoded, "--output", deduped, "--progress-interval", "0"]
    check_clean(*interrupt_at(argv, "publishing", signal.SIGINT), signal.SIGINT)
    assert not os.path.exists(os.path.join(deduped, "_SUCCESS"))
    assert main(argv) == 0 and os.path.exists(os.path.join(deduped, "_SUCCESS"))


@pytest.mark.slow
def test_train_and_retrain_interrupted(tmp_path, vector_data):
    model = str(tmp_path / "model")
    argv = ["train", "--input", vector_data, "--features", "vec", "--code-size", "3", "--output", model,
            "--epochs", "2", "--hidden", "16", "--min-steps", "5"]
    check_clean(*interrupt_at(argv, "batches", signal.SIGINT), signal.SIGINT)
    check_clean(*interrupt_at(argv, "publishing", signal.SIGTERM), signal.SIGTERM)
    assert not os.path.exists(model) and not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    assert main(argv) == 0 and os.path.exists(os.path.join(model, "saved_model.pb"))

    registry = str(tmp_path / "registry")
    check_clean(*interrupt_at(["retrain", "--registry", registry, "--input", vector_data, "--features", "vec",
                               "--code-size", "3", "--epochs", "2"], "batches", signal.SIGTERM), signal.SIGTERM)
    staging = os.path.join(registry, "_staging")
    assert not os.path.exists(os.path.join(registry, "champion.json"))
    assert not os.path.isdir(staging) or not os.listdir(staging)
