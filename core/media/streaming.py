"""Bounded producer/consumer threads, so decoding and encoding overlap inference while memory
stays constant: at most ``depth`` frames wait in each queue, whatever the clip length."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(source: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate ``source`` in a background thread, ``depth`` items ahead of the consumer."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            items.put(_Failure(exc))

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


class BackgroundSink(Generic[T]):
    """Runs ``consume(item)`` in a worker thread; ``put`` blocks when ``depth`` items wait.

    An error in the worker is raised by the next ``put`` or by ``join``.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 4):
        self._consume = consume
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._work, name="matanyone-encode", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._items.get()
            if item is _DONE:
                return
            if self._error is not None or self._cancelled:
                continue  # drain after a failure or a cancel so put() never blocks forever
            try:
                self._consume(item)
            except BaseException as exc:
                self._error = exc

    def put(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        self._items.put(item)

    def join(self) -> None:
        self._items.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Stop without consuming what still waits (the run is being thrown away); returns once
        the worker has finished the item in hand, so nothing writes after it."""
        self._cancelled = True
        while True:
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
        self._items.put(_DONE)
        self._thread.join()
