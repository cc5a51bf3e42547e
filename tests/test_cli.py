"""The `ae-tf` command end to end, as scripts outside the project call it."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import write_scalar_dataset, write_vector_dataset

BIN = pathlib.Path(sys.executable).parent
# as a user runs it: the CLI itself quiets TensorFlow (no TF_CPP_MIN_LOG_LEVEL set from outside)
ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
STARTUP_NOISE = ("absl::InitializeLog", "cuInit", "cudart_stub", "cpu_feature_guard")

# Runs `ae-tf ARGS` in a fresh interpreter and notes, when the one-line error is written, which heavy
# libraries had been imported by then.
PROBE = """
import sys

class Probe:
    def __init__(self, inner):
        self.inner = inner

    def write(self, text):
        if "ae-tf: error:" in text:
            loaded = [m for m in ("tensorflow", "keras", "apache_beam") if m in sys.modules]
            self.inner.write("[imported when the error was printed: %s]\\n" % (",".join(loaded) or "none"))
        return self.inner.write(text)

    def __getattr__(self, name):
        return getattr(self.inner, name)

sys.stderr = Probe(sys.stderr)
from ae_tf_cli import main
sys.exit(main(sys.argv[1:]))
"""


def ae_tf(*args, check=True):
    return subprocess.run([str(BIN / "ae-tf"), *args], capture_output=True, text=True, env=ENV, check=check)


@pytest.mark.slow
def test_train_then_encode_from_the_command_line(tmp_path):
    write_vector_dataset(tmp_path / "data", rows=600, files=2)
    trained = ae_tf("train", "--input", f"{tmp_path}/data/*.parquet", "--features", "vec", "--code-size", "3",
                    "--output", str(tmp_path / "model"), "--epochs", "2", "--batch-size", "64", "--seed", "3")
    assert "anomaly    threshold" in trained.stdout
    assert json.loads((tmp_path / "model" / "assets" / "ae_tf_metadata.json").read_text())["config"]["seed"] == 3
    # one line per epoch (ours, not Keras' as well), and none of TensorFlow's C++ start-up lines
    assert trained.stderr.count("epoch 1/2:") == 1 and "Epoch 1/2" not in trained.stdout + trained.stderr
    encoded = ae_tf("encode", "--model", str(tmp_path / "model"), "--input", f"{tmp_path}/data/*.parquet",
                    "--output", f"{tmp_path}/out/", "--keep-columns", "id")
    assert "rows       in 600  out 600" in encoded.stdout
    assert f"output     {tmp_path}/out/part-*.parquet" in encoded.stdout  # not out//part-*
    for run in (trained, encoded):
        assert not [line for line in run.stderr.splitlines() if any(n in line for n in STARTUP_NOISE)], run.stderr
    assert (tmp_path / "out" / "_SUCCESS").exists()
    table = pq.read_table(tmp_path / "out" / "part-00000-of-00002.parquet")
    assert table.schema.names == ["id", "embedding", "reconstruction_error"]


def test_user_errors_are_one_line_and_nonzero(tmp_path):
    write_vector_dataset(tmp_path / "data", rows=60, files=1)
    bad = ae_tf("train", "--input", f"{tmp_path}/data/*.parquet", "--features", "nope", "--code-size", "3",
                "--output", str(tmp_path / "m"), check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("ae-tf: error: ")
    assert "feature column 'nope' not found" in bad.stderr and "Traceback" not in bad.stderr
    missing = ae_tf("encode", "--model", str(tmp_path / "none"), "--input", f"{tmp_path}/data/*.parquet",
                    "--output", str(tmp_path / "out"), check=False)
    assert missing.returncode == 2 and "model directory not found" in missing.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "m").exists()


def test_user_errors_come_before_tensorflow_is_imported(tmp_path, vector_model):
    """A mistyped path, column or output is reported before TensorFlow (and, for the pipelines, Beam) is
    imported, so the error comes in about a second instead of after TensorFlow's 5-10 s start."""
    write_vector_dataset(tmp_path / "data", rows=60, files=1)
    write_scalar_dataset(tmp_path / "scalars", rows=60)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "part-00000-of-00001.parquet").write_bytes(b"an earlier run")
    data, model = f"{tmp_path}/data/*.parquet", vector_model[0]
    train = ["train", "--features", "vec", "--code-size", "3", "--output", str(tmp_path / "m")]
    cases = [
        (["train", "--input", f"{tmp_path}/none/*.parquet", *train[1:]], "none/*.parquet: no input file matches"),
        (["train", "--input", data, "--features", "nope", *train[3:]], "feature column 'nope' not found"),
        (["train", "--input", data, *train[1:-1], str(tmp_path / "data")], "data: already exists"),
        (["encode", "--model", str(tmp_path / "none"), "--input", data, "--output", str(tmp_path / "o")],
         "none: model directory not found"),
        (["encode", "--model", model, "--input", f"{tmp_path}/none", "--output", str(tmp_path / "o")],
         "none: no input file matches"),
        (["encode", "--model", model, "--input", str(tmp_path / "scalars"), "--output", str(tmp_path / "o")],
         "scalars.parquet: feature column 'vec' not found"),
        (["encode", "--model", model, "--input", data, "--output", str(tmp_path / "taken")],
         "taken: output directory is not empty"),
        (["report", "--model", str(tmp_path / "none"), "--output", str(tmp_path / "r")],
         "none: model directory not found"),
    ]
    for args, message in cases:
        run = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=ENV)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and message in lines[-1] and lines[-1].startswith("ae-tf: error: "), run.stderr
        assert lines[-2] == "[imported when the error was printed: none]", (args, run.stderr)
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


def test_help_reads_well(capsys):
    """Defaults only where they say something, a description for every model command, and --version."""
    import ae_tf
    from ae_tf_cli import main

    for command in ("train", "sweep", "retrain", "report", "tfds-to-parquet", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        flat = " ".join(text.split())
        assert "(default: None)" not in flat and not re.search(r"\(default: [^)]*\) \(default:", flat), command
        assert max(len(line) for line in text.splitlines()) <= 100, command  # descriptions are wrapped
        description = text.split("\n\n")[1]
        assert len(description) > 60 and not description.startswith("options:"), command
    with pytest.raises(SystemExit) as exit_code:
        main(["--version"])
    assert exit_code.value.code == 0 and capsys.readouterr().out.strip() == f"ae-tf {ae_tf.__version__}"


def test_help_lists_commands_and_pipeline_module_runs():
    assert "train" in ae_tf("--help").stdout and "encode" in ae_tf("--help").stdout
    assert "--keep-columns" in ae_tf("encode", "--help").stdout
    out = subprocess.run([sys.executable, "-m", "pipelines.encode", "--help"], capture_output=True, text=True,
                         env=ENV, check=True)
    assert "--runner DataflowRunner" in out.stdout


def test_tensorflow_startup_filter_keeps_real_errors():
    from ae_tf.model.quiet_tf import filter_startup_lines

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1.1 5376 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
            "E0000 00:00:1.2 7248 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)\n"
            "E0000 00:00:1.3 7248 op_kernel.cc:1] OOM when allocating tensor\n")
    kept, dropped = filter_startup_lines(text)
    assert kept == "E0000 00:00:1.3 7248 op_kernel.cc:1] OOM when allocating tensor\n" and len(dropped) == 3
