"""Typed errors whose message is the one line a user sees: the problem, then the fix."""

from __future__ import annotations


class MatanyoneError(Exception):
    """Base of every error the CLI turns into a one-line message and a non-zero exit."""

    exit_code = 1


class InputError(MatanyoneError):
    """Unreadable or unsuitable input video, frame folder or mask."""

    exit_code = 2


class WeightsError(MatanyoneError, ValueError):
    """A weights reference or checkpoint that cannot be used."""

    exit_code = 3


class BackendError(MatanyoneError):
    """Unknown backend, or one that cannot run on this machine."""

    exit_code = 4


class ExportError(MatanyoneError):
    """An export that failed or did not validate."""

    exit_code = 5


class OutputError(MatanyoneError):
    """An output location that cannot be written."""

    exit_code = 6


class OptionError(InputError):
    """An option value that can never work (a negative frame count, an unknown format); raised
    before any input is read or any weights load."""


class MatanyoneWarning(UserWarning):
    """Something a user should know that does not stop the run (a resized mask, dropped audio);
    the CLI prints it as one ``warning:`` line."""


class MemoryLimitError(MatanyoneError):
    """A run that does not fit in this machine's memory: refused up front, or out of memory."""

    exit_code = 7


#: Phrases of the allocators' out-of-memory messages (torch CPU/CUDA, ONNX Runtime, the C++ runtime).
_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "failed to allocate memory", "bad_alloc", "cannot allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (MemoryError, or a runtime's error saying so)."""
    return isinstance(exc, MemoryError) or any(p in str(exc).lower() for p in _OUT_OF_MEMORY)


def out_of_memory(module: str, shape: tuple[int, ...] | None = None) -> MemoryLimitError:
    """The one-line error for an allocation that failed inside ``module``."""
    at = f" at {shape[-1]}x{shape[-2]}" if shape and len(shape) >= 2 else ""
    return MemoryLimitError(
        f"ran out of memory in the {module} module{at}; pass a smaller --max-size or free memory "
        "(no output was written)"
    )
