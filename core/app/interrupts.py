"""Ending a run on a signal the way Ctrl-C ends it: cleanly, with nothing half-written.

A scheduler, ``timeout``, ``docker stop`` or a closed terminal ends a process with SIGTERM or
SIGHUP, whose default action kills it on the spot: no ``finally`` runs, and staged outputs stay
behind as hidden ``.partial-*`` entries. Inside ``signals_as_interrupts()`` those signals (and
SIGINT) raise ``Interrupted`` instead, a KeyboardInterrupt, so every cleanup path that already
handles Ctrl-C (writers' abort, the decode/encode threads) handles them too, and the caller
exits with the shell's code for the signal (128 + its number: 130, 143, 129).

Only the first signal raises: a second one during the clean-up that follows is ignored, so a
repeated Ctrl-C or a supervisor's second SIGTERM cannot cut the clean-up short and leave the
debris it is removing. (SIGKILL cannot be caught; staging.remove_leftovers cleans up after it.)

Used by ``matanyone run`` and meant for any long-running command (``batch``): wrap the work,
catch KeyboardInterrupt, exit with ``exit_code(exc)``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals handled, where the platform has them (Windows has no SIGHUP).
HANDLED = tuple(s for s in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class Interrupted(KeyboardInterrupt):
    """A run ended by a signal; a KeyboardInterrupt, so Ctrl-C's clean-up paths run for it."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(self.signal_name)

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: BaseException) -> int:
    """The shell's exit status for a run ended by ``exc``: 128 + the signal; 130 for a plain Ctrl-C."""
    if isinstance(exc, Interrupted):
        return exc.exit_code
    return 128 + int(signal.SIGINT)


def describe(exc: BaseException) -> str:
    """'interrupted (SIGTERM)', 'interrupted (Ctrl-C)' for the one-line message."""
    if isinstance(exc, Interrupted) and exc.signum != signal.SIGINT:
        return f"interrupted ({exc.signal_name})"
    return "interrupted (Ctrl-C)"


@contextmanager
def signals_as_interrupts(signals: tuple[int, ...] = HANDLED) -> Iterator[None]:
    """Within the block, ``signals`` raise Interrupted in the main thread (the first one only).

    A signal the process was told to ignore (``nohup`` ignores SIGHUP) stays ignored. Outside the
    main thread, where Python cannot install handlers, it does nothing. The previous handlers
    come back on exit, so it nests (an inner block restores the outer block's).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            return  # already ending: let the clean-up finish
        fired = True
        raise Interrupted(signum)

    previous = {}
    try:
        for number in signals:
            if signal.getsignal(number) == signal.SIG_IGN:
                continue  # ignored on purpose (nohup, a background job): keep it ignored
            previous[number] = signal.signal(number, handler)
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
