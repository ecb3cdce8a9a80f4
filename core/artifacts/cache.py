"""The artifact cache: exported module sets keyed by everything that changes their bytes.

Exports take seconds to minutes, so a backend that needs ONNX or CoreML files looks here first.
A key is a hash of (format, weights digest, padded H, W, T, precision, exporter version, opset);
the directory for a key is only ever created by an atomic rename of a finished, manifest-bearing
build, and a per-key lock makes a second process that wants the same key wait and reuse the
first one's result instead of exporting over it.

Torch-free: the ``build`` callable passed to ``ensure_artifacts`` does the importing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..engine.errors import ExportError
from ..engine.files import atomic_write_json
from ..engine.spec import Dims
from .manifest import Manifest, ManifestError, ManifestMismatch, check_manifest, read_manifest

CACHE_ENV = "MATANYONE_CACHE"
APP_NAME = "matanyone-engine"
#: How long a process waits for another one exporting the same key before giving up.
DEFAULT_LOCK_TIMEOUT_S = 3600.0

Build = Callable[[Path], Any]


def cache_root() -> Path:
    """``$MATANYONE_CACHE`` if set, else the platform's user cache directory."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))


def artifact_key(
    format: str,
    weights_digest: str,
    dims: Dims,
    precision: str,
    exporter_version: str,
    opset: int | None = None,
) -> str:
    """Stable hash of every input that changes the exported bytes (H and W are the padded size)."""
    fields = {
        "format": format,
        "weights_digest": weights_digest,
        "height": dims.height,
        "width": dims.width,
        "mem_frames": dims.mem_frames,
        "precision": precision,
        "exporter_version": exporter_version,
        "opset": opset,
    }
    blob = json.dumps(fields, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def artifact_dir(format: str, key: str, root: Path | None = None) -> Path:
    """Where the artifacts for ``key`` live (whether or not they exist yet)."""
    return (root or cache_root()) / format / key


def ensure_artifacts(
    format: str,
    dims: Dims,
    precision: str,
    build: Build,
    *,
    weights_digest: str,
    exporter_version: str,
    opset: int | None = None,
    root: Path | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return the directory of a finished artifact set for the request, building it if absent.

    ``build(tmp_dir)`` must write the five module files and ``manifest.json`` into ``tmp_dir``;
    it runs only when no valid set exists, inside the key's lock, and its directory is renamed
    into place only after its manifest was read back and checked against the request. A set whose
    manifest contradicts the request raises ManifestError rather than being used. ``log`` hears
    the build and any wait for another process's build (``build_notice`` when None).
    """
    say = log if log is not None else build_notice
    final = artifact_dir(format, artifact_key(format, weights_digest, dims, precision, exporter_version, opset), root)
    expect: dict[str, Any] = {"format": format, "dims": dims, "precision": precision, "weights_digest": weights_digest}

    if (final / "manifest.json").is_file():
        try:
            check_manifest(read_manifest(final), directory=final, **expect)
            return final
        except ManifestMismatch:
            raise
        except ManifestError:
            pass  # incomplete or unreadable: rebuilt below, under the lock

    final.parent.mkdir(parents=True, exist_ok=True)
    with _key_lock(final.with_name(final.name + ".lock"), lock_timeout, say):
        if final.exists():
            try:
                check_manifest(read_manifest(final), directory=final, **expect)
                return final  # another process finished it while we waited
            except ManifestMismatch:
                raise
            except ManifestError:
                # Incomplete leftovers (someone deleted files): we hold the lock, so replace them.
                _remove_tree(final)
        tmp = final.with_name(f".{final.name}.build-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            say(
                f"building {format} artifacts for {dims.height}x{dims.width} T={dims.mem_frames} "
                f"{precision} into {final}"
            )
            build(tmp)
            try:
                manifest = read_manifest(tmp)
            except ManifestError as exc:
                raise ExportError(f"the {format} build wrote no usable manifest: {exc}") from None
            check_manifest(manifest, directory=tmp, **expect)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                _remove_tree(tmp)
    return final


def build_notice(message: str) -> None:
    """What a build or a wait for one says when the caller passed no ``log``: a first run's export
    takes minutes at 4K, and a silent terminal looks hung. A warning-level record, so it shows on
    stderr without any logging set up."""
    logging.getLogger("matanyone_engine.build").warning("matanyone: %s", message)


def ensure_export(
    format: str,
    weights: str,
    dims: Dims,
    precision: str,
    load: Callable[[], tuple[Any, str]],
    export: Callable[[Path, Any, str], Any],
    *,
    exporter_version: str,
    opset: int | None = None,
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``ensure_artifacts`` for an exporter: ``load()`` -> (modules, weights digest) runs at most
    once, and only when the digest is not remembered or the set must be built; ``export(tmp,
    modules, digest)`` writes the set. The loaded network is dropped before returning."""
    loaded: dict[str, Any] = {}

    def modules_and_digest() -> tuple[Any, str]:
        if "modules" not in loaded:
            loaded["modules"], loaded["digest"] = load()
        return loaded["modules"], loaded["digest"]

    digest = cached_weights_digest(weights, lambda: modules_and_digest()[1], root=root)
    try:
        return ensure_artifacts(
            format,
            dims,
            precision,
            lambda tmp: export(tmp, *modules_and_digest()),
            weights_digest=digest,
            exporter_version=exporter_version,
            opset=opset,
            root=root,
            log=log,
        )
    finally:
        loaded.clear()


def cached_weights_digest(weights: str, compute: Callable[[], str], root: Path | None = None) -> str:
    """The weights digest for a reference, computed once and remembered in the cache directory.

    Computing a digest means materialising the whole state dict (hundreds of MB for a
    checkpoint); a lookup that only needs the cache key should not pay that every run. File
    references are remembered by (absolute path, size, mtime), so a replaced checkpoint gets a
    fresh digest; seeded references by the reference string and the package version.
    """
    memo_path = (root or cache_root()) / "weights-digests.json"
    ident = _weights_identity(weights)
    memo: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    if isinstance(memo, dict) and isinstance(memo.get(ident), str):
        return memo[ident]
    digest = compute()
    with contextlib.suppress(OSError):
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        with _key_lock(memo_path.with_suffix(".lock"), 60.0, None):
            fresh: dict[str, str] = {}
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(memo_path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    fresh = loaded
            fresh[ident] = digest
            atomic_write_json(memo_path, fresh, sort_keys=True)
    return digest


def _weights_identity(weights: str) -> str:
    path = Path(weights).expanduser()
    if not weights.startswith("seeded:") and path.is_file():
        st = path.stat()
        return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    from .. import __version__

    return f"ref:{weights}:{__version__}"


# ---------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _key_lock(path: Path, timeout: float, log: Callable[[str], None] | None) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (filelock if present, else fcntl/msvcrt)."""
    try:
        import filelock
    except ImportError:
        filelock = None  # type: ignore[assignment]
    if filelock is not None:
        lock = filelock.FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            if log:
                log(f"waiting for another process building {path.stem}")
            try:
                lock.acquire(timeout=timeout)
            except filelock.Timeout:
                raise ExportError(
                    f"gave up after {timeout:.0f} s waiting for the lock {path}; if no other export "
                    "is running, delete that file"
                ) from None
        try:
            yield
        finally:
            lock.release()
        return
    with open(path, "a+b") as fh:  # pragma: no cover - exercised only without filelock
        deadline = time.monotonic() + timeout
        while True:
            try:
                _try_lock(fh)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ExportError(f"gave up after {timeout:.0f} s waiting for the lock {path}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            _unlock(fh)


def _try_lock(fh: Any) -> None:  # pragma: no cover - fallback path
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fh: Any) -> None:  # pragma: no cover - fallback path
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_tree(path: Path) -> None:
    """Delete a directory by first renaming it away, so no reader sees it half-deleted."""
    trash = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


__all__ = [
    "CACHE_ENV",
    "Manifest",
    "artifact_dir",
    "artifact_key",
    "cache_root",
    "cached_weights_digest",
    "ensure_artifacts",
]
