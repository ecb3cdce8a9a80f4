"""All-or-nothing file writes, shared by every layer that leaves a file for another process.

A reader (a concurrent ``run --backend auto`` reading the placement profile, a backend reading a
manifest, a second process exporting the same cache key) must see either the old file or the new
one, never half of one. The one way to get that from a POSIX file system is to write a temporary
sibling in the same directory and ``os.replace`` it over the target.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None], *, fsync: bool = False) -> Path:
    """Call ``write(tmp)`` on a hidden sibling of ``path``, then rename it into place.

    The sibling is removed when ``write`` (or the rename) fails, so an error leaves no stray file.
    ``fsync`` forces the bytes to disk before the rename, for files that outlive a power cut.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = False) -> Path:
    """``path`` holds exactly ``text`` (UTF-8) afterwards, or is unchanged."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write, fsync=fsync)


def atomic_write_json(
    path: str | os.PathLike[str],
    data: Any,
    *,
    default: Callable[[Any], Any] | None = None,
    sort_keys: bool = False,
    fsync: bool = False,
) -> Path:
    """JSON, indented, with a trailing newline, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=default) + "\n"
    return atomic_write_text(path, text, fsync=fsync)
