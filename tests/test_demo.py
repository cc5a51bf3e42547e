"""`make demo` runs `ae-tf demo`; here on a small row count so it stays quick."""

import numpy as np
import pyarrow.parquet as pq

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
