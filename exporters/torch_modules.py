"""The torch modules every exporter traces, and the digest that names the weights behind them.

ONNX and Core ML export the same network, so they must load it the same way and key their caches
by the same digest: a weights reference resolved here once gives both the modules (the five of
core.spec plus the optional fast variants such as ``mask_value``) and that digest. The stand-in
references (``standin:…``, tiny spec-conformant modules for tests) resolve here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from matanyone_engine.core.artifacts.weights import weights_digest

from .torch_required import require_torch

#: Test-only weights reference: tiny spec-conformant stand-in modules (exporters/onnx/standin.py).
STANDIN_PREFIX = "standin:"


def resolve_torch_modules(weights: str) -> tuple[dict[str, Any], str]:
    """Every module to export for a weights reference (optional variants included), and its digest.

    The real network's digest is the one ``load_network`` computed over its state dict (GOLDEN.md's
    ``all_entries_sha256`` for the seeded weights); stand-ins are digested by ``modules_digest``.
    """
    require_torch()
    if weights.startswith(STANDIN_PREFIX):
        from .onnx.standin import build_standin_modules

        seed = weights[len(STANDIN_PREFIX) :]
        modules = build_standin_modules(seed=int(seed[1:]) if seed[1:].isdigit() else 0)
        return modules, modules_digest(modules)
    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.network import load_network

    net = load_network(weights)
    return build_torch_modules(net, optional=True), net.weights_digest


def modules_digest(modules: Mapping[str, Any]) -> str:
    """sha256 over every module's parameters and buffers, ``module.key`` in sorted module order:
    the digest of torch modules handed to an exporter without a weights reference behind them."""
    state: dict[str, np.ndarray] = {}
    for name in sorted(modules):
        for key, value in modules[name].state_dict().items():
            state[f"{name}.{key}"] = value.detach().cpu().numpy()
    return weights_digest(state)
