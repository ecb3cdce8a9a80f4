"""The decode/encode threads shut down promptly whichever side stops, and close what they opened."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from matanyone_engine.core.media.streaming import BackgroundSink, prefetch


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def _wait_gone(prefix: str, seconds: float = 1.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _threads(prefix):
            return True
        time.sleep(0.01)
    return not _threads(prefix)


def test_consumer_that_stops_early_ends_the_producer_and_closes_the_source():
    closed = threading.Event()
    produced: list[int] = []

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    stream = prefetch(endless(), depth=2)
    assert [next(stream), next(stream)] == [0, 1]
    started = time.monotonic()
    stream.close()  # the consumer stops mid-clip, with the producer blocked on a full queue
    assert time.monotonic() - started < 1.0
    assert closed.wait(1.0), "the source generator was not closed"
    assert _wait_gone("matanyone-decode")
    assert len(produced) <= 2 + 2 + 1  # two read, at most `depth` queued and one in hand


def test_error_in_the_source_reaches_the_consumer_in_order():
    def broken():
        yield 1
        raise ValueError("frame 2 is corrupt")

    stream = prefetch(broken(), depth=4)
    assert next(stream) == 1
    with pytest.raises(ValueError, match="frame 2 is corrupt"):
        next(stream)
    assert _wait_gone("matanyone-decode")


def test_cancel_drops_the_queue_and_joins_within_a_second():
    consumed: list[int] = []

    def slow(item: int) -> None:
        time.sleep(0.1)
        consumed.append(item)

    sink: BackgroundSink[int] = BackgroundSink(slow, depth=8)
    for i in range(8):
        sink.put(i)
    started = time.monotonic()
    sink.cancel()
    assert time.monotonic() - started < 1.0
    assert len(consumed) < 8  # the queued items were dropped, not written
    assert _wait_gone("matanyone-encode")


def test_writer_error_is_raised_by_put_or_join_and_never_blocks_the_producer():
    def failing(item: int) -> None:
        raise OSError(28, "No space left on device")

    sink: BackgroundSink[int] = BackgroundSink(failing, depth=1)
    started = time.monotonic()
    with pytest.raises(OSError, match="No space left"):
        for i in range(100):
            sink.put(i)
        sink.join()
    assert time.monotonic() - started < 1.0
    assert _wait_gone("matanyone-encode")


def test_an_abandoned_clip_leaves_no_thread_behind(tmp_path, torch_modules):
    """convert_video interrupted mid-clip: the exception comes out and every pipeline thread ends."""
    from matanyone_engine.core.app import api
    from matanyone_engine.core.media.synthetic import moving_shapes

    frames, mask = moving_shapes(32, 48, 12)
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image

    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    calls = {"n": 0}

    def progress(index: int) -> None:
        calls["n"] += 1
        if index == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.convert_video(
            folder,
            mask,
            tmp_path / "out",
            outputs=["alpha", "rgba"],
            modules=torch_modules,
            warmup=0,
            progress=progress,
        )
    assert calls["n"] == 4
    assert _wait_gone("matanyone-"), [t.name for t in _threads("matanyone-")]
    assert not any((tmp_path / "out").rglob("*.png")), "an interrupted run published frames"
    assert np.asarray(mask).any()
