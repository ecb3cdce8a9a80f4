"""Bounded producer/consumer threads, so decoding and encoding overlap inference while memory
stays constant: at most ``depth`` frames wait in each queue, whatever the clip length.

Both ends must shut down promptly whichever side stops first: a consumer that stops reading
(an error, Ctrl-C, a closed generator) must not leave the decode thread blocked on a full queue or
the video file open, and a writer that fails must not leave the producer blocked either. Every
blocking ``put`` therefore waits in short slices and gives up once the other side has gone.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_DONE = object()
#: How long one blocking queue operation waits before it looks whether the other side has gone.
_SLICE_S = 0.05


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(items: queue.Queue[Any], item: object, gone: Callable[[], bool]) -> bool:
    """Put ``item`` unless ``gone()`` turns true first; True when it was queued."""
    while not gone():
        try:
            items.put(item, timeout=_SLICE_S)
            return True
        except queue.Full:
            continue
    return False


def _close(source: object) -> None:
    """Close a generator (or anything with ``close``) so its ``finally`` runs now, in this thread:
    a video decoder closes its container here rather than whenever the garbage collector runs."""
    close = getattr(source, "close", None)
    if callable(close):
        close()


def prefetch(source: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate ``source`` in a background thread, ``depth`` items ahead of the consumer.

    When the consumer stops early (it closes this generator, or raises), the producer thread
    stops at its next item, closes ``source`` and exits; the generator's ``finally`` waits for it.
    An exception inside ``source`` is raised in the consumer at the point it would have been read.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if not _put(items, item, stop.is_set):
                    return
            _put(items, _DONE, stop.is_set)
        except BaseException as exc:  # handed to the consumer, raised there
            _put(items, _Failure(exc), stop.is_set)
        finally:
            _close(iterator)

    thread = threading.Thread(target=produce, name="matanyone-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundSink(Generic[T]):
    """Runs ``consume(item)`` in a worker thread; ``put`` blocks while ``depth`` items wait.

    An error in the worker is raised by the next ``put`` or by ``join``. ``cancel`` drops what is
    still queued and stops the worker (for a run that is being abandoned: its output is discarded
    anyway, so finishing the queued frames would only delay the exit).
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 4):
        self._consume = consume
        self._items: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._work, name="matanyone-encode", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._items.get()
            if item is _DONE or self._cancelled.is_set():
                return
            try:
                self._consume(item)
            except BaseException as exc:  # raised in the producer by put() or join()
                self._error = exc
                return  # put() sees the thread gone and raises the error instead of blocking

    def _gone(self) -> bool:
        return self._cancelled.is_set() or not self._thread.is_alive()

    def put(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        if not _put(self._items, item, self._gone) and self._error is not None:
            raise self._error

    def join(self) -> None:
        """Wait until every queued item was consumed; raise the worker's error if it had one."""
        _put(self._items, _DONE, self._gone)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Stop now: queued items are dropped, the item in progress finishes, the thread exits."""
        self._cancelled.set()
        while True:
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
        _put(self._items, _DONE, lambda: not self._thread.is_alive())
        self._thread.join()
