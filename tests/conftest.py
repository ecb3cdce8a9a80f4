"""Shared fixtures. Data from ../shared (golden outputs, real clips) is located beside the checkout;
tests that need it skip with a reason when it is absent, and fail instead when CI is set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _need(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is absent (the shared golden data and clips live in ../shared beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "golden")


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "data")


@pytest.fixture(scope="session")
def golden_modules(golden_dir: Path):
    return np.load(_need(golden_dir / "modules_112x192.npz"))


@pytest.fixture(scope="session")
def golden_clip(golden_dir: Path):
    return np.load(_need(golden_dir / "golden_sample1_224x400.npz"))


@pytest.fixture(scope="session")
def torch_net():
    """The network with seeded:v1-pm weights, shared by the tests of one session."""
    pytest.importorskip("torch")
    from matanyone_engine.backends.torch.network import load_network

    return load_network("seeded:v1-pm")


@pytest.fixture(scope="session")
def torch_modules(torch_net):
    """numpy-protocol modules of the torch backend over the shared network."""
    import torch

    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.plugin import TorchModule

    return {n: TorchModule(s, torch.device("cpu"), "fp32") for n, s in build_torch_modules(torch_net).items()}
