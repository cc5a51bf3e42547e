"""`make demo` runs `ae-tf demo`; here on a small row count so it stays quick."""

import ast
import importlib.metadata as metadata
import os
import pathlib
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from ae_tf.inputs.demo_data import jittered_digits, load_digits
from pipelines import demo

ROOT = pathlib.Path(__file__).resolve().parent.parent


def setup_requirements() -> tuple[list[str], dict[str, list[str]]]:
    """INSTALL_REQUIRES and EXTRAS, read from setup.py's literals (setup.py itself is not run)."""
    values = {}
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in ("INSTALL_REQUIRES", "EXTRAS"):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values["INSTALL_REQUIRES"], values["EXTRAS"]


def demo_environment() -> set[str]:
    """Distributions that `make demo` (pip install -e '.[demo]') installs: the runtime and demo
    requirements and, from the installed metadata, everything they require in turn (with the extras
    they ask for)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    runtime, extras = setup_requirements()
    todo, seen = [Requirement(r) for r in runtime + extras["demo"]], set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in needs:
            need = Requirement(text)
            if need.marker is None or any(need.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                todo.append(need)
    return {name for name, _ in seen}


def shadow_test_only_packages(directory: pathlib.Path) -> list[str]:
    """Make every module that only the test extra installs (pandas, polars, duckdb, ...) unimportable for
    a child process that puts `directory` first on PYTHONPATH; returns the module names."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    _, extras = setup_requirements()
    demo_env = demo_environment()
    test_only = {canonicalize_name(Requirement(r).name) for r in extras["test"]} - demo_env
    blocked = sorted(module for module, dists in metadata.packages_distributions().items()
                     if module.isidentifier() and all(canonicalize_name(d) in test_only for d in dists))
    for module in blocked:
        (directory / module).mkdir(parents=True)
        (directory / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}' (only the test extra installs it)\", "
            f"name={module!r})\n")
    return blocked


def test_jittered_digits_stay_close_to_real_digits():
    images, _ = load_digits()
    pixels, labels, source = jittered_digits(500, seed=1)
    assert pixels.shape == (500, 64) and pixels.min() >= 0 and pixels.max() <= 16
    flat = images.reshape(len(images), 64)
    to_source = np.abs(pixels - flat[source]).mean()
    to_other = np.abs(pixels - flat[(source + 1) % len(flat)]).mean()
    assert to_source < 0.7 * to_other  # jitter, not noise: each row stays near the digit it came from
    assert (labels == load_digits()[1][source]).all()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    assert demo.main(["--workdir", str(tmp_path / "demo"), "--rows", "3000", "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "rows       in 3,000  out 3,000" in printed and "[4/4] report" in printed
    assert "//part-" not in printed

    # the closing hint runs as printed, in the demo's own environment: nothing only the test extra installs
    hint = next(line for line in printed.splitlines() if line.startswith("read it"))[len("read it"):].strip()
    blocked = shadow_test_only_packages(tmp_path / "shadow")
    assert {"pandas", "polars", "duckdb"} <= set(blocked)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), str(ROOT)])}
    shown = subprocess.run(hint, shell=True, capture_output=True, text=True, env=env, cwd=os.getcwd())  # where the demo ran: the hint may name .venv relatively
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("(3000, 8)\n")
    blocked_check = subprocess.run([sys.executable, "-c", "import pandas"], capture_output=True, text=True, env=env)
    assert "only the test extra installs it" in blocked_check.stderr  # the shadowing itself works
    assert (tmp_path / "demo" / "report" / "index.html").exists()
    table = pq.read_table(tmp_path / "demo" / "embeddings")
    assert table.num_rows == 3000 and table.schema.field("embedding").type.list_size == 8
    assert set(table.column("label").to_numpy()) == set(range(10))


def test_demo_replaces_only_its_own_folder(tmp_path):
    """--workdir is deleted and rewritten: an earlier demo's folder is, a folder holding other files is not."""
    earlier = tmp_path / "earlier"
    for name in ("data", "model", "embeddings"):
        (earlier / name).mkdir(parents=True)
    demo.clear_workdir(str(earlier))
    assert not earlier.exists()
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="thesis.tex, which the demo did not write"):
        demo.clear_workdir(str(mine))
    assert (mine / "thesis.tex").read_text() == "keep me"
    from ae_tf_cli import main  # `ae-tf demo` refuses it before TensorFlow loads, with a one-line error

    assert main(["demo", "--workdir", str(mine)]) == 2 and (mine / "thesis.tex").exists()
    assert "DELETED and replaced" in " ".join(demo.demo_arg_parser().format_help().split())


def test_photo_crops_are_real_photographs_with_planted_near_duplicates():
    import io

    from PIL import Image

    from ae_tf.inputs.demo_images import load_photos, photo_crops

    assert len(load_photos()) >= 20  # every one from the installed wheels, no download
    table = photo_crops(60, size=32, duplicate_fraction=0.3, seed=2)
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(b)), dtype=np.float32) for b in table.column("image").to_pylist()])
    assert pixels.shape == (60, 32, 32, 3) and pixels.std() > 20  # real, varied images
    variants, sources = table.column("variant").to_pylist(), table.column("duplicate_of").to_numpy()
    planted = [i for i, v in enumerate(variants) if v != "original"]
    assert planted and all(variants[sources[i]] == "original" for i in planted)
    for i in planted:  # each copy is near its original (a mirror image once mirrored back), far from the others
        copy = pixels[i][:, ::-1] if variants[i] == "flip" else pixels[i]
        to_source = np.abs(copy - pixels[sources[i]]).mean()
        others = [np.abs(copy - pixels[j]).mean() for j in range(60) if variants[j] == "original" and j != sources[i]]
        assert to_source < 0.5 * np.median(others), (i, variants[i])


@pytest.mark.slow
def test_image_demo_end_to_end(tmp_path, capsys):
    """A tiny run of `ae-tf demo --images`: trains, encodes, dedups and writes the report with real outputs."""
    from PIL import Image

    workdir = tmp_path / "photos"
    assert demo.main(["--images", "--workdir", str(workdir), "--rows", "160", "--image-size", "32",
                      "--epochs", "2", "--filters", "8,16", "--code-size", "16"]) == 0
    printed = capsys.readouterr().out
    assert "rows       in 160  out 160  rejected 0" in printed and "[5/5] report" in printed
    assert "planted    " in printed and "found" in printed
    table = pq.read_table(workdir / "embeddings")
    assert table.num_rows == 160 and table.schema.field("embedding").type.list_size == 16
    assert {"photo", "variant", "duplicate_of"} <= set(table.column_names)
    assert (workdir / "dedup" / "_SUCCESS").exists()
    # the reconstruction grid at full size: 8 columns of 32x32 cells with 4 px gaps, 2 pairs of rows
    with Image.open(workdir / "report" / "reconstructions.png") as grid:
        assert grid.size == (8 * 36 + 4, 2 * (2 * 32 + 12) + 4)
    page = (workdir / "report" / "index.html").read_text()
    assert "at full size (32x32 px each" in page
    assert "fetched from the encode input by" in page  # the duplicate groups are drawn as photos
    assert "mirror-invariant" in printed
