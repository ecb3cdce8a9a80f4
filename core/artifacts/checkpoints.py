"""The official checkpoint: found in the local cache, or fetched once from the Hugging Face Hub.

huggingface_hub checks the download against the Hub's LFS sha256, and we keep that digest beside
the file so a later truncation or edit is caught before the model loads.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..engine.errors import WeightsError

HF_REPO = "PeiqingYang/MatAnyone"
HF_FILE = "model.safetensors"
RELEASE_URL = "https://github.com/pq-yang/MatAnyone/releases/download/v1.0.0/matanyone.pth"
LOCAL_NAMES = ("model.safetensors", "matanyone.pth")


def weights_dir() -> Path:
    from .cache import cache_root

    return cache_root() / "weights"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path) -> Path:
    recorded = path.with_name(path.name + ".sha256")
    if recorded.exists() and recorded.read_text().split()[0] != _sha256(path):
        raise WeightsError(
            f"{path} does not match the checksum recorded when it was downloaded; delete it and run again"
        )
    return path


def official_checkpoint(download: bool = True) -> Path:
    """Path of the official weights, downloading them on first use (with a progress bar)."""
    folder = weights_dir()
    for name in LOCAL_NAMES:
        if (folder / name).exists():
            return _verified(folder / name)
    hint = (
        f"the official MatAnyone checkpoint is not in {folder}: download {RELEASE_URL} (or {HF_FILE} "
        f"from huggingface.co/{HF_REPO}) into that folder, or pass --weights PATH "
        "(seeded:v1-pm gives random test weights)"
    )
    if not download or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise WeightsError(hint)
    try:
        from huggingface_hub import hf_hub_download

        folder.mkdir(parents=True, exist_ok=True)
        fetched = Path(hf_hub_download(HF_REPO, HF_FILE, local_dir=str(folder)))
    except Exception as exc:  # offline, DNS, HTTP errors: all end in the same advice
        raise WeightsError(f"{hint} (download failed: {type(exc).__name__})") from None
    fetched.with_name(fetched.name + ".sha256").write_text(_sha256(fetched) + "\n")
    return fetched
