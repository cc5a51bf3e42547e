"""Dataflow, offline: every pipeline translates for the Dataflow runner (dry run, no credentials, no network)
with both ways of shipping the code; the GPU preset reaches the job description; the Flex Template's
parameters are the pipeline's real flags and its launcher entry point translates too."""

from __future__ import annotations

import importlib
import importlib.util
import json
import pathlib
import runpy
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.runner.dataflow import (
    ONE_PROCESS_PER_WORKER,
    DataflowOptionError,
    GpuPreset,
    flex_template_argv,
    gpu_beam_args,
    with_gpu_preset,
)
from pipelines.runner.options import encode_arg_parser, split_args

ROOT = pathlib.Path(__file__).resolve().parents[1]
METADATA = ROOT / "deploy" / "dataflow" / "metadata.json"
IMAGE = "us-central1-docker.pkg.dev/my-project/ae-tf/dataflow-worker:0.1.0"
# The flags under which Dataflow translation runs offline (no project, no credentials, no upload).
DRY_RUN = ["--runner=DataflowRunner", "--project=my-project", "--region=us-central1",
           "--temp_location=gs://my-bucket/tmp", "--staging_location=gs://my-bucket/staging",
           "--no_auth", "--dry_run=True", "--sdk_location=container"]
ACCELERATOR = "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"

# Each pipeline's own arguments for a dry run. A pipeline module that exists without an entry here fails
# test_pipeline_translates_for_dataflow: every pipeline must be submittable to Dataflow.
PIPELINE_ARGS = {
    "pipelines.encode": lambda ctx: ["--model", ctx["model"], "--input", f"{ctx['data']}/*.parquet",
                                     "--output", ctx["out"]],
    "pipelines.reduce": lambda ctx: ["--input", f"{ctx['data']}/*.parquet", "--column", "vec", "--components", "2",
                                     "--output", ctx["out"]],
    "pipelines.dedup": lambda ctx: ["--input", f"{ctx['data']}/*.parquet", "--column", "vec",
                                    "--output", ctx["out"]],
}
PIPELINES = [m for m in ("pipelines.encode", "pipelines.reduce", "pipelines.dedup") if importlib.util.find_spec(m)]


@pytest.fixture
def ctx(tmp_path, vector_model, vector_data):
    return {"model": vector_model[0], "data": vector_data, "out": str(tmp_path / "out"), "tmp": tmp_path}


def encode_argv(ctx, *extra: str) -> list[str]:
    return [*PIPELINE_ARGS["pipelines.encode"](ctx), *DRY_RUN, *extra]


def dry_run_job(argv: list[str]):
    """Dry-run the encode pipeline on Dataflow; returns the job's Environment proto (what the service gets)."""
    from apache_beam.runners.dataflow.internal import apiclient

    from pipelines.encode import run

    _, beam_args = split_args(encode_arg_parser(), argv)
    options = PipelineOptions(beam_args)
    pipeline = beam.Pipeline(options=options)
    assert run(argv, test_pipeline=pipeline) is None  # translated, not executed
    proto = pipeline.runner.proto_pipeline
    return apiclient.Environment([], options, "8", "gs://my-bucket/staging/pipeline.pb", proto).proto, proto


@pytest.mark.parametrize("module", PIPELINES)
def test_pipeline_translates_for_dataflow(module, ctx):
    if module not in PIPELINE_ARGS:
        pytest.fail(f"{module}: add its Dataflow dry-run arguments to PIPELINE_ARGS in {__file__}")
    pipeline = importlib.import_module(module)
    assert pipeline.run([*PIPELINE_ARGS[module](ctx), *DRY_RUN]) is None


def test_setup_file_path_stages_the_package(ctx):
    """`--setup_file ./setup.py`: workers pip-install the sdist Beam builds and stages."""
    _, proto = dry_run_job(encode_argv(ctx, "--setup_file", str(ROOT / "setup.py")))
    staged = [d.role_payload for env in proto.components.environments.values() for d in env.dependencies]
    assert any(b"workflow.tar.gz" in p for p in staged)


def test_worker_image_path_runs_in_the_image(ctx):
    environment, _ = dry_run_job(encode_argv(ctx, f"--sdk_container_image={IMAGE}"))
    images = [i.container_image for pool in environment.worker_pools for i in pool.sdk_harness_container_images]
    assert images and set(images) == {IMAGE}


def test_gpu_preset_option_set():
    args = gpu_beam_args()
    assert f"--dataflow_service_options={ACCELERATOR}" in args
    assert "--machine_type=n1-standard-4" in args
    assert f"--experiments={ONE_PROCESS_PER_WORKER}" in args
    assert GpuPreset.parse("nvidia-l4:2").service_option() == \
        "worker_accelerator=type:nvidia-l4;count:2;install-nvidia-driver"
    assert "--machine_type=g2-standard-4" in gpu_beam_args("nvidia-l4")
    # What the user set explicitly wins; nothing is doubled.
    mine = ["--machine_type=n1-highmem-8", "--experiments=no_use_multiple_sdk_containers"]
    assert with_gpu_preset(mine, "nvidia-tesla-t4") == [*mine, f"--dataflow_service_options={ACCELERATOR}"]


def test_gpu_preset_refuses_what_cannot_work():
    with pytest.raises(DataflowOptionError, match="needs --sdk_container_image"):
        with_gpu_preset(["--runner=DataflowRunner"], "nvidia-tesla-t4")
    with pytest.raises(DataflowOptionError, match="pass --machine_type"):
        gpu_beam_args("nvidia-h100-80gb")
    with pytest.raises(DataflowOptionError, match="TYPE:COUNT"):
        GpuPreset.parse("nvidia-l4:zero")


def test_gpu_preset_reaches_the_job_description(ctx):
    environment, _ = dry_run_job(encode_argv(ctx, "--gpu", f"--sdk_container_image={IMAGE}"))
    assert ACCELERATOR in environment.service_options
    assert environment.worker_pools[0].machine_type == "n1-standard-4"
    assert ONE_PROCESS_PER_WORKER in environment.experiments
    assert "use_multiple_sdk_containers" not in environment.experiments  # one model copy per worker


def test_gpu_without_worker_image_is_one_line_error(ctx, capsys):
    from ae_tf_cli import main

    assert main(["encode", *encode_argv(ctx, "--gpu")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs --sdk_container_image" in err and len(err.splitlines()) == 1


def _flag_actions():
    return {s: a for a in encode_arg_parser()._actions for s in a.option_strings if s.startswith("--")}


# Encode flags deliberately absent from the template, with the reason.
NOT_IN_TEMPLATE = {"--help": "argparse", "--progress-interval": "progress lines exist on the local runner only"}


def test_flex_template_parameters_are_the_pipelines_real_flags():
    params = {p["name"]: p for p in json.loads(METADATA.read_text())["parameters"]}
    actions = _flag_actions()
    for name, param in params.items():
        flag = "--" + name.replace("_", "-")
        assert flag in actions, f"metadata.json parameter {name!r}: `ae-tf encode` has no {flag}"
        action = actions[flag]
        assert param["isOptional"] is not action.required, f"{name}: isOptional disagrees with the parser"
        assert param.get("label") and param.get("helpText"), f"{name}: label and helpText are required"
        if action.nargs == 0:  # a switch: the template passes true/false
            assert param.get("regexes") == ["^(true|false)$"], f"{name}: a switch must be true|false"
    covered = {"--" + n.replace("_", "-") for n in params}
    missing = {f for f, a in actions.items() if a.option_strings[0] == f} - covered - set(NOT_IN_TEMPLATE)
    assert not missing, f"encode flags missing from metadata.json: {sorted(missing)}"


def test_flex_template_argv_bridge():
    argv = ["--model=gs://b/registry", "--keep_columns=id,name", "--overwrite=true", "--skip_bad_files=false",
            "--gpu=nvidia-l4", "--temp_location=gs://b/tmp", "--max_num_workers=4"]
    assert flex_template_argv(argv, encode_arg_parser()) == [
        "--model=gs://b/registry", "--keep-columns=id,name", "--overwrite", "--gpu=nvidia-l4",
        "--temp_location=gs://b/tmp", "--max_num_workers=4"]
    with pytest.raises(DataflowOptionError, match="expected true or false"):
        flex_template_argv(["--overwrite=maybe"], encode_arg_parser())


def test_flex_template_launcher_entry_point_translates(ctx, monkeypatch):
    """The file the template launcher runs, given parameters the way the launcher passes them."""
    launcher = ROOT / "deploy" / "dataflow" / "launcher" / "main.py"
    params = [f"--model={ctx['model']}", f"--input={ctx['data']}/*.parquet", f"--output={ctx['out']}",
              "--keep_columns=id", "--overwrite=true", "--flag_anomalies=false", "--gpu=nvidia-tesla-t4",
              f"--sdk_container_image={IMAGE}"]
    monkeypatch.setattr(sys, "argv", [str(launcher), *params, *DRY_RUN])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(launcher), run_name="__main__")
    assert exit_info.value.code == 0


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("module", PIPELINES)
def test_dry_run_leaves_the_output_untouched(module, ctx):
    """Planning and a dry run change nothing on disk: no new output directory, and an earlier run's
    `_SUCCESS` (which a real run retracts when it starts) stays where it is."""
    pipeline = importlib.import_module(module)
    assert pipeline.run([*PIPELINE_ARGS[module](ctx), *DRY_RUN]) is None
    assert not pathlib.Path(ctx["out"]).exists()
    out = pathlib.Path(ctx["out"])
    out.mkdir()
    (out / "part-00000-of-00001.parquet").write_bytes(b"an earlier run's shard")
    (out / "_SUCCESS").write_text('{"rows_in": 1}')
    before = _tree(out)
    assert pipeline.run([*PIPELINE_ARGS[module](ctx), *DRY_RUN, "--overwrite"]) is None
    assert _tree(out) == before
