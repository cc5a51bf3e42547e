"""deploy/: images pin what setup.py pins; schedules are valid and name only real flags; the cron job runs."""

from __future__ import annotations

import ast
import configparser
import contextlib
import importlib.metadata
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from conftest import write_vector_dataset
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ae_tf.commands.retrain import EXIT_KEPT
from ae_tf_cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
WORKER = DEPLOY / "dataflow" / "Dockerfile"
LAUNCHER = DEPLOY / "dataflow" / "launcher" / "Dockerfile"
TRAINER = DEPLOY / "docker" / "Dockerfile.train"
RETRAIN_SH = DEPLOY / "cron" / "retrain.sh"


# ---- pins ------------------------------------------------------------------------------------------

def setup_pins() -> tuple[dict[str, SpecifierSet], SpecifierSet]:
    """setup.py's install requirements by project name, and python_requires, read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    requires = next(ast.literal_eval(n.value) for n in tree.body
                    if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "INSTALL_REQUIRES")
    call = next(n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call))
    python = next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "python_requires")
    return {Requirement(r).name: Requirement(r).specifier for r in requires}, SpecifierSet(python)


def dockerfile(path: pathlib.Path) -> tuple[dict[str, str], list[str], str]:
    """(ARG defaults, FROM images with ARGs substituted, the whole text with line continuations joined)."""
    text = path.read_text().replace("\\\n", " ")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    substitute = lambda s: re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)  # noqa: E731
    froms = [substitute(m) for m in re.findall(r"^FROM (\S+)", text, re.MULTILINE)]
    return args, froms, substitute(text)


def test_images_pin_the_versions_setup_py_pins():
    requires, python_requires = setup_pins()
    worker_args, worker_from, worker_text = dockerfile(WORKER)
    train_args, train_from, train_text = dockerfile(TRAINER)
    _, launcher_from, _ = dockerfile(LAUNCHER)

    beam, tensorflow, python = worker_args["BEAM_VERSION"], worker_args["TENSORFLOW_VERSION"], worker_args["PYTHON_VERSION"]
    assert worker_from == [f"apache/beam_python{python}_sdk:{beam}"]
    assert requires["apache-beam"].contains(beam) and requires["tensorflow"].contains(tensorflow)
    assert python_requires.contains(f"{python}.0")
    assert f"apache-beam[gcp]=={beam}" in worker_text and f"tensorflow[and-cuda]=={tensorflow}" in worker_text

    # The trainer: TensorFlow's own GPU image of the same version, same Beam and Python.
    assert train_from == [f"tensorflow/tensorflow:{tensorflow}-gpu"]
    assert (train_args["TENSORFLOW_VERSION"], train_args["BEAM_VERSION"], train_args["PYTHON_VERSION"]) == \
        (tensorflow, beam, python)
    assert f"apache-beam[gcp]=={beam}" in train_text and f"tensorflow=={tensorflow}" in train_text

    # The launcher: Google's launcher for the same Python, on top of the worker image.
    assert launcher_from[0].startswith(f"gcr.io/dataflow-templates-base/python{python.replace('.', '')}-template-launcher-base:")
    assert "FROM ${WORKER_IMAGE}" in LAUNCHER.read_text()

    # Jobs are launched from this environment: its SDK must be the one in the worker image.
    assert importlib.metadata.version("apache-beam") == beam
    assert Version(importlib.metadata.version("tensorflow")).release[:2] == Version(tensorflow).release[:2]
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" == python


def test_images_keep_the_right_entrypoints():
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in WORKER.read_text()
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in LAUNCHER.read_text()
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in LAUNCHER.read_text()
    assert (DEPLOY / "dataflow" / "launcher" / "main.py").exists()
    assert 'ENTRYPOINT ["/opt/ae-tf/deploy/cron/retrain.sh"]' in TRAINER.read_text()


# ---- flags named in schedules are real -------------------------------------------------------------

def assert_retrain_args(args: list[str]) -> None:
    """The real `ae-tf retrain` parser must accept them (argparse exits on an unknown flag)."""
    parsed = build_parser().parse_args(["retrain", *args])
    assert parsed.registry and parsed.input


def assert_encode_args(args: list[str]) -> None:
    """`ae-tf encode` flags go to its parser; whatever is left must be a known Beam option."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.runner.options import encode_arg_parser, split_args

    parsed, beam_args = split_args(encode_arg_parser(), args)
    assert parsed.model and parsed.input and parsed.output
    options = PipelineOptions(beam_args)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    assert not unknown, f"not Beam options: {sorted(unknown)}"


def assert_refresh_args(args: list[str]) -> None:
    """`ae-tf refresh` flags go to its parser; whatever is left must be a known Beam option."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.refresh import refresh_arg_parser
    from pipelines.runner.options import split_args

    parsed, beam_args = split_args(refresh_arg_parser(), args)
    assert parsed.model and parsed.input and parsed.store
    options = PipelineOptions(beam_args)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    assert not unknown, f"not Beam options: {sorted(unknown)}"


def assert_retrain_then_refresh(args: list[str]) -> None:
    """retrain.sh arguments: `ae-tf retrain` flags, `--`, then `ae-tf refresh` flags."""
    assert "--" in args, "the schedule must refresh the store after retraining"
    cut = args.index("--")
    assert_retrain_args(args[:cut])
    assert_refresh_args(args[cut + 1:])


def test_kubernetes_cronjob_is_valid():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "retrain-cronjob.yaml").read_text()))
    cron = next(d for d in docs if d["kind"] == "CronJob")
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert cron["apiVersion"] == "batch/v1" and account["apiVersion"] == "v1"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", cron["metadata"]["name"])
    assert len(cron["metadata"]["name"]) <= 52  # CronJob names leave room for the Job suffix
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by podFailurePolicy, and retries are the Job's
    container = pod["containers"][0]
    assert container["name"] and container["image"]
    assert job["podFailurePolicy"]["rules"][0]["onExitCodes"]["containerName"] == container["name"]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert all(isinstance(a, str) for a in container["args"])
    assert_retrain_then_refresh(container["args"])


def module_constants(path: pathlib.Path) -> dict:
    """Top-level NAME = literal assignments of a Python file, read without importing it."""
    constants = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                constants[node.targets[0].id] = ast.literal_eval(node.value)
    return constants


def test_airflow_dag_is_valid_and_names_real_flags():
    path = DEPLOY / "airflow" / "ae_tf_retrain_dag.py"
    compile(path.read_text(), str(path), "exec")  # syntax, without installing Airflow
    constants = module_constants(path)
    assert constants["EXIT_KEPT"] == EXIT_KEPT
    retrain = shlex.split(constants["RETRAIN_COMMAND"])
    refresh = shlex.split(constants["REFRESH_COMMAND"])
    assert retrain[:2] == ["ae-tf", "retrain"] and refresh[:2] == ["ae-tf", "refresh"]
    assert_retrain_args(retrain[2:])
    assert_refresh_args(refresh[2:])
    text = path.read_text()
    assert "skip_on_exit_code=EXIT_KEPT" in text and 'trigger_rule="none_failed"' in text


def test_cron_and_systemd_examples_name_real_flags():
    line = next(row for row in (DEPLOY / "cron" / "crontab").read_text().splitlines()
                if row and not row.startswith("#") and "=" not in row.split()[0])
    command = shlex.split(line.split(">>")[0])[5:]  # after the five schedule fields
    assert command[:3] == ["flock", "-n", "/tmp/ae-tf-retrain.lock"]
    assert command[3].endswith("deploy/cron/retrain.sh")
    assert_retrain_then_refresh(command[4:])

    units = {}
    for name in ("ae-tf-retrain.service", "ae-tf-retrain.timer"):
        parser = configparser.ConfigParser(interpolation=None, strict=True)
        parser.optionxform = str
        parser.read_string((DEPLOY / "cron" / name).read_text())
        units[name] = parser
    service, timer = units["ae-tf-retrain.service"], units["ae-tf-retrain.timer"]
    assert service["Service"]["Type"] == "oneshot"
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert exec_start[0].endswith("deploy/cron/retrain.sh")
    assert_retrain_then_refresh(exec_start[1:])
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Unit"] == "ae-tf-retrain.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_shell_scripts_parse_and_the_scheduler_body_uses_template_parameters():
    for script in (RETRAIN_SH, DEPLOY / "dataflow" / "flex_template.sh", DEPLOY / "scheduler" / "cloud_scheduler.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert os.access(script, os.X_OK), f"{script} is not executable"
    cloud_run = re.search(r'--args="([^"]+)"', (DEPLOY / "scheduler" / "cloud_scheduler.sh").read_text()).group(1)
    assert_retrain_then_refresh(cloud_run.replace("${BUCKET}", "my-bucket").split(","))
    body = json.loads((DEPLOY / "scheduler" / "encode-launch-body.json").read_text())["launchParameter"]
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
    names = {p["name"] for p in metadata["parameters"]}
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional")}
    assert set(body["parameters"]) <= names and required <= set(body["parameters"])


# ---- the cron example runs ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/bin/env"), reason="needs a POSIX shell")
def test_cron_command_runs_locally_on_tiny_data(tmp_path):
    """The exact wrapper cron, systemd and the CronJob run: promoted first, then kept (still exit 0); each
    run then refreshes the store: everything the first time, nothing new the second."""
    for day, seed in (("2026-06-01", 3), ("2026-06-02", 4)):
        write_vector_dataset(tmp_path / "data" / f"dt={day}", rows=300, files=1, seed=seed)
    registry = tmp_path / "registry"
    env = {**os.environ, "AE_TF": str(pathlib.Path(sys.executable).with_name("ae-tf")),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [str(RETRAIN_SH), "--registry", str(registry), "--input", str(tmp_path / "data" / "dt=*"),
               "--latest-partitions", "7", "--features", "vec", "--code-size", "3", "--hidden", "8",
               "--epochs", "2", "--batch-size", "64",
               "--", "--model", str(registry), "--input", str(tmp_path / "data" / "dt=*" / "*.parquet"),
               "--store", str(tmp_path / "store"), "--progress-interval", "0"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "promoted a new champion" in first.stdout
    assert "encoded    600 rows" in first.stdout and "refresh: store is current" in first.stdout
    champion = json.loads((registry / "champion.json").read_text())["champion"]
    assert json.loads((tmp_path / "store" / "CURRENT").read_text())["model_version"] == champion
    # Same data, same seed, same recipe: not better by 1% -> kept, which the wrapper reports as success.
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "champion kept" in second.stdout
    assert "encoded    0 rows" in second.stdout
    assert json.loads((registry / "champion.json").read_text())["champion"] == champion
