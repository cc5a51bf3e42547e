"""The read-ahead and write-behind threads of the encode step: order kept, errors surface, nothing leaks."""

import threading

import pytest

from pipelines.io.overlap import BackgroundCalls, prefetched


def test_prefetched_keeps_order_and_reraises_the_reader_error():
    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise OSError("disk gone")

    items = prefetched(broken())
    assert next(items) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(items)


def test_prefetched_stops_its_thread_when_the_consumer_stops_early():
    before = threading.active_count()
    items = prefetched(iter(range(10_000)), depth=1)
    assert next(items) == 0
    items.close()
    assert threading.active_count() == before


def test_background_calls_run_in_order_and_report_the_first_error():
    seen = []
    calls = BackgroundCalls(seen.append, depth=2)
    for i in range(20):
        calls.submit(i)
    calls.close()
    assert seen == list(range(20))

    def fail(item):
        raise ValueError(f"cannot write {item}")

    calls = BackgroundCalls(fail)
    calls.submit("a")
    with pytest.raises(ValueError, match="cannot write a"):
        calls.close()
