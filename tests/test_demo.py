"""`make demo` runs `ae-tf demo`; here on a small row count so it stays quick."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from ae_tf.demo_data import jittered_digits, load_digits
from pipelines import demo


def test_jittered_digits_stay_close_to_real_digits():
    images, _ = load_digits()
    pixels, labels, source = jittered_digits(500, seed=1)
    assert pixels.shape == (500, 64) and pixels.min() >= 0 and pixels.max() <= 16
    flat = images.reshape(len(images), 64)
    to_source = np.abs(pixels - flat[source]).mean()
    to_other = np.abs(pixels - flat[(source + 1) % len(flat)]).mean()
    assert to_source < 0.7 * to_other  # jitter, not noise: each row stays near the digit it came from
    assert (labels == load_digits()[1][source]).all()


def test_demo_end_to_end(tmp_path, capsys):
    assert demo.main(["--workdir", str(tmp_path / "demo"), "--rows", "3000", "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "rows       in 3,000  out 3,000" in printed and "[4/4] report" in printed
    assert (tmp_path / "demo" / "report" / "index.html").exists()
    table = pq.read_table(tmp_path / "demo" / "embeddings")
    assert table.num_rows == 3000 and table.schema.field("embedding").type.list_size == 8
    assert set(table.column("label").to_numpy()) == set(range(10))


def test_photo_crops_are_real_photographs_with_planted_near_duplicates():
    import io

    from PIL import Image

    from ae_tf.demo_images import load_photos, photo_crops

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
    assert "at full size (32x32 px each" in (workdir / "report" / "index.html").read_text()
