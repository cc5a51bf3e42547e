"""Progress lines on the local runner: rows done, rows/s and time left."""

from conftest import ROWS

from pipelines import encode
from pipelines.runner.progress import ProgressReporter, add, format_seconds, progress_line


def test_progress_line_reports_rate_share_and_time_left():
    line = progress_line("encode", 250_000, 1_000_000, 2.0)
    assert line == "encode: 250,000 / 1,000,000 rows (25%), 125,000 rows/s, 6s left"
    assert format_seconds(3725) == "1h02m" and format_seconds(75) == "1m15s"


def test_reporter_prints_while_running(capsys):
    import time

    with ProgressReporter("t", "encode", 100, interval=0.01):
        add("t", 40)
        time.sleep(0.1)
    err = capsys.readouterr().err
    assert "encode: 40 / 100 rows (40%)" in err


def test_encode_prints_progress_lines(vector_model, vector_data, tmp_path, capsys):
    encode.run(["--model", vector_model[0], "--input", f"{vector_data}/*.parquet", "--output", str(tmp_path / "o"),
                "--progress-interval", "0.05", "--batch-rows", "100"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("encode: ")]
    assert lines, "no progress line printed"
    assert f"/ {ROWS:,} rows" in lines[-1] and "rows/s" in lines[-1]


def test_reduce_counts_both_passes_in_its_progress(vector_data, tmp_path, capsys):
    from pipelines import reduce

    reduce.run(["--input", f"{vector_data}/*.parquet", "--column", "vec", "--output", str(tmp_path / "r"),
                "--components", "2", "--progress-interval", "0.05", "--batch-rows", "50"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reduce: ")]
    assert lines and f"/ {2 * ROWS:,} rows" in lines[-1]  # fit pass + projection pass
