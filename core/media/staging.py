"""Staging: outputs are built under hidden names and renamed into place only when complete.

A writer builds ``.<name>.partial-<host>-<pid>-<token>`` beside its destination and renames it to
``<name>`` in commit; a destination that already exists is first set aside as
``.<name>.old-<host>-<pid>-<token>`` and removed once the new one is in place. A crash, Ctrl-C or
SIGTERM therefore never leaves half an output where a user or a script would take it for one.

What a run cannot clean up itself (SIGKILL, a power cut, a kill between the two renames) is
cleaned up by the next run into the same folder: ``remove_leftovers`` recognises the staging
names of this module (and of earlier versions, which used ``.<name>.partial-XXXXXXXX``), checks
that the process that made them is gone (same host, pid no longer running), removes partials and
puts a set-aside old output back if its replacement never arrived. Nothing else is touched: a
user's own dot files do not match these names.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import weakref
from pathlib import Path

from ..engine.errors import OutputError

_TAGS = ("partial", "old")
#: This module's names: dot, destination name, tag, host hash, pid, 8 hex, optional suffix.
_STAGED = re.compile(
    r"^\.(?P<dest>.+)\.(?P<tag>partial|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}(?:\.[A-Za-z0-9]{1,8})?$"
)
#: Earlier versions' names: tempfile's 8 random characters (partials), or 8 hex (set-aside outputs).
_LEGACY = re.compile(r"^\.(?P<dest>.+)\.(?:partial-[a-z0-9_]{8}(?:\.[A-Za-z0-9]{1,8})?|(?P<old>old)-[0-9a-f]{8})$")
_PROBE_PREFIX = ".matanyone-write-test-"
_PROBE = re.compile(r"^\.matanyone-write-test-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}$")


def _host_tag() -> str:
    """8 hex digits naming this machine, so a folder shared over the network is cleaned only of
    leftovers whose owner this machine can check."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _owner_tag() -> str:
    return f"{_host_tag()}-{os.getpid()}"


def staged_name(dest: Path, tag: str, suffix: str = "") -> Path:
    """A fresh hidden sibling name of ``dest`` carrying this process's owner tag."""
    if tag not in _TAGS:
        raise ValueError(f"tag must be one of {_TAGS}, got {tag!r}")
    return dest.with_name(f".{dest.name}.{tag}-{_owner_tag()}-{secrets.token_hex(4)}{suffix}")


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no safe liveness probe (os.kill would terminate it): never remove
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _owner_gone(host: str, pid: str) -> bool:
    return host == _host_tag() and not _pid_running(int(pid))


def remove(path: Path) -> None:
    """Delete a file or a folder tree; a missing path is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def remove_leftovers(folder: Path) -> list[str]:
    """Clean up after runs into ``folder`` that were killed; returns what was done, one line each.

    Partial outputs of dead owners are removed; a set-aside old output whose replacement never
    arrived is renamed back, one whose replacement did arrive is removed.
    """
    done: list[str] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return done
    for entry in entries:
        name = entry.name
        if not name.startswith("."):
            continue
        probe = _PROBE.match(name)
        if probe and _owner_gone(probe["host"], probe["pid"]):
            remove(entry)
            done.append(f"removed {name}")
            continue
        staged = _STAGED.match(name)
        if staged:
            if not _owner_gone(staged["host"], staged["pid"]):
                continue
            is_old, dest = staged["tag"] == "old", staged["dest"]
        else:
            legacy = _LEGACY.match(name)
            if not legacy:
                continue
            is_old, dest = legacy["old"] is not None, legacy["dest"]
        target = folder / dest
        if is_old and not target.exists() and not target.is_symlink():
            try:
                os.rename(entry, target)
            except OSError:
                continue
            done.append(f"restored {dest} from {name}")
        else:
            remove(entry)
            done.append(f"removed {name}")
    return done


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _unwritable(outdir: Path, reason: object) -> OutputError:
    return OutputError(f"cannot write to {outdir}: {reason}; choose another -o folder")


def check_writable(outdir: str | Path) -> Path:
    """Prove that ``outdir`` can be written (or created) without creating it, so a run that
    fails on its input or weights leaves no empty folder behind."""
    outdir = Path(outdir).expanduser()
    existing = _nearest_existing(outdir)
    if not existing.is_dir():
        where = "it is" if existing == outdir else f"{existing} is"
        raise _unwritable(outdir, f"{where} a file, not a folder")
    probe = existing / f"{_PROBE_PREFIX}{_owner_tag()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _unwritable(outdir, exc.strerror or exc) from exc
    return outdir


def make_folders(outdir: Path) -> list[Path]:
    """Create ``outdir`` and any missing parents; returns the ones created, outermost first."""
    missing: list[Path] = []
    path = outdir
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
    except OSError as exc:
        remove_empty(made)
        raise _unwritable(outdir, exc.strerror or exc) from exc
    return made


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a run created (innermost first) where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass


def replace(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an existing output is set aside first and restored on failure."""
    if not dest.exists() and not dest.is_symlink():
        os.rename(tmp, dest)
        return
    if not (tmp.is_dir() or dest.is_dir()):
        os.replace(tmp, dest)  # atomic for files
        return
    old = staged_name(dest, "old")
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        os.rename(old, dest)
        raise
    remove(old)


class Staged:
    """A hidden sibling of ``dest``; removed on discard, and on garbage collection or interpreter
    exit if nobody committed or discarded it, so not even a forgotten writer leaves debris."""

    def __init__(self, dest: Path, is_dir: bool):
        self.dest = dest
        self.tmp = staged_name(dest, "partial", "" if is_dir else dest.suffix)
        try:
            if is_dir:
                os.mkdir(self.tmp, 0o700)
            else:
                os.close(os.open(self.tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise OutputError(
                f"cannot write to {dest.parent}: {exc.strerror or exc}; choose another -o folder"
            ) from exc
        self._finalizer = weakref.finalize(self, remove, self.tmp)

    def commit(self) -> Path:
        try:
            # Staging entries are private (0600/0700); outputs get the usual umask modes.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, (0o777 if self.tmp.is_dir() else 0o666) & ~umask)
            replace(self.tmp, self.dest)
        except OSError as exc:
            raise OutputError(
                f"cannot put {self.dest} in place: {exc.strerror or exc}; "
                "remove what is there or choose another -o folder"
            ) from exc
        self._finalizer.detach()
        return self.dest

    def discard(self) -> None:
        self._finalizer()
