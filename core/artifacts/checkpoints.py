"""The official checkpoints (MatAnyone and MatAnyone 2): found in the local cache, or fetched once
from the Hugging Face Hub.

huggingface_hub shows the download's progress and checks its size; the file's sha256 is then
checked against the one the Hub publishes for it (its LFS object id, asked for before the download)
and kept beside the file, so a later truncation or edit is caught before the model loads. A file
the Hub publishes no sha256 for is not downloaded: nothing known-good could check it.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..engine.errors import WeightsError
from ..engine.files import atomic_write_text
from .manifest import path_digest

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class OfficialModel:
    """One published checkpoint: where it comes from and where the cache keeps it."""

    title: str
    hf_repo: str
    hf_file: str
    release_url: str
    #: inside the cache's weights folder; MatAnyone 1 stays at its root, where it always was
    subfolder: str
    #: file names accepted there, the Hub's first
    local_names: tuple[str, ...]


#: MatAnyone (CVPR 2025), pq-yang/MatAnyone.
MATANYONE = OfficialModel(
    title="MatAnyone",
    hf_repo="PeiqingYang/MatAnyone",
    hf_file="model.safetensors",
    release_url="https://github.com/pq-yang/MatAnyone/releases/download/v1.0.0/matanyone.pth",
    subfolder="",
    local_names=("model.safetensors", "matanyone.pth"),
)
#: MatAnyone 2, pq-yang/MatAnyone2: the same network class and parameter names as MatAnyone 1
#: (its model code differs from MatAnyone 1's only in the package name), new weights.
MATANYONE2 = OfficialModel(
    title="MatAnyone 2",
    hf_repo="PeiqingYang/MatAnyone2",
    hf_file="model.safetensors",
    release_url="https://github.com/pq-yang/MatAnyone2/releases/download/v1.0.0/matanyone2.pth",
    subfolder="matanyone2",
    local_names=("model.safetensors", "matanyone2.pth"),
)
#: What ``--weights`` takes for each.
OFFICIAL_REFS = {
    "official": MATANYONE,
    "default": MATANYONE,
    "": MATANYONE,
    "official2": MATANYONE2,
    "matanyone2": MATANYONE2,
}

HF_REPO = MATANYONE.hf_repo
HF_FILE = MATANYONE.hf_file
RELEASE_URL = MATANYONE.release_url
LOCAL_NAMES = MATANYONE.local_names


def weights_dir() -> Path:
    from .cache import cache_root

    return cache_root() / "weights"


def _verified(path: Path) -> Path:
    recorded = path.with_name(path.name + ".sha256")
    if recorded.exists() and recorded.read_text().split()[0] != path_digest(path):
        raise WeightsError(
            f"{path} does not match the checksum recorded when it was downloaded; delete it and run again"
        )
    return path


def official_checkpoint(download: bool = True, model: OfficialModel = MATANYONE) -> Path:
    """Path of the official weights, downloading them on first use (with a progress bar)."""
    folder = weights_dir() / model.subfolder if model.subfolder else weights_dir()
    for name in model.local_names:
        if (folder / name).exists():
            return _verified(folder / name)
    hint = (
        f"the official {model.title} checkpoint is not in {folder}: download {model.release_url} (or "
        f"{model.hf_file} from huggingface.co/{model.hf_repo}) into that folder, or pass --weights PATH "
        "(seeded:v1-pm gives random test weights)"
    )
    if not download or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise WeightsError(hint)
    import huggingface_hub

    try:
        folder.mkdir(parents=True, exist_ok=True)
        published = _published_sha256(huggingface_hub, model)
        fetched = Path(huggingface_hub.hf_hub_download(model.hf_repo, model.hf_file, local_dir=str(folder)))
    except WeightsError:
        raise
    except OSError as exc:
        if _is_local_write_error(exc):  # the disk, not the network: say so, with the system's words
            raise WeightsError(
                f"cannot write the {model.title} checkpoint to {folder}: {exc.strerror or exc}; free space there, "
                "fix its permissions, or set MATANYONE_CACHE to another folder"
            ) from exc
        raise WeightsError(f"{hint} (download failed: {_one_line(exc)})") from exc
    except Exception as exc:  # the Hub's own errors that are not OSErrors (bad responses): the same advice
        raise WeightsError(f"{hint} (download failed: {_one_line(exc)})") from exc
    digest = path_digest(fetched)
    if digest != published:
        fetched.unlink(missing_ok=True)
        raise WeightsError(
            f"the downloaded {model.hf_file} from huggingface.co/{model.hf_repo} has sha256 {digest[:12]}... but "
            f"the Hub publishes {published[:12]}...; it was deleted: run again, or download {model.release_url} by hand"
        )
    atomic_write_text(fetched.with_name(fetched.name + ".sha256"), digest + "\n")
    return fetched


#: errno values that mean the download could not be written here (not that the Hub was unreachable).
_LOCAL_WRITE_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT}


def _is_local_write_error(exc: OSError) -> bool:
    return isinstance(exc, PermissionError) or exc.errno in _LOCAL_WRITE_ERRNOS


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: the cause stays visible in a one-line error."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _published_sha256(hub, model: OfficialModel) -> str:
    """The sha256 the Hub publishes for the file (its LFS object id), fetched before the download
    so that the bytes are checked against a digest that did not come from them."""
    (info,) = hub.get_paths_info(model.hf_repo, [model.hf_file])
    lfs = getattr(info, "lfs", None)  # a folder, or a small file kept in git, has no LFS entry
    sha = str(lfs.sha256).lower() if lfs is not None else ""
    if not _SHA256.match(sha):
        raise WeightsError(
            f"huggingface.co/{model.hf_repo} publishes no sha256 for {model.hf_file}, so a download could not be "
            f"checked; download {model.release_url} by hand into {weights_dir() / model.subfolder}"
        )
    return sha
