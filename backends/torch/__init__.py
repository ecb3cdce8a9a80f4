"""The PyTorch network (the reference) and its backend plugin."""

from __future__ import annotations

import hashlib
from pathlib import Path

_GRAPH_SOURCES = ("layers.py", "network.py", "modules.py")


def graph_revision() -> str:
    """Short hash of the network's source files, read as bytes (no torch import).

    Exported artifacts are cached under a key that includes it, so editing the network can never
    silently reuse an export of the old graph."""
    from matanyone_engine.core.engine.tiling import DECODER_GROUP_BYTES, MIN_TILE_ROWS, READ_TILE_BYTES

    folder = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _GRAPH_SOURCES:
        digest.update((folder / name).read_bytes())
    # the memory read's tiles are unrolled into exported graphs: a new budget is a new graph
    digest.update(f"read tiles {READ_TILE_BYTES} {MIN_TILE_ROWS} decoder groups {DECODER_GROUP_BYTES}".encode())
    return digest.hexdigest()[:12]
