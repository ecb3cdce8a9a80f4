"""`matanyone demo`, the README's main job, end to end: what it writes, and that it runs the same
path as `run` with plain defaults (no pipelining on a CPU backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.app import api
from matanyone_engine.core.cli import app


def test_demo_writes_alpha_rgba_and_a_composite_without_pipelining(tmp_path: Path, monkeypatch):
    seen: dict[str, object] = {}
    real = api.matte_subjects

    def recording(*args, **kwargs):
        seen.update(kwargs)
        yield from real(*args, **kwargs)

    monkeypatch.setattr(api, "matte_subjects", recording)
    monkeypatch.chdir(tmp_path)  # no ../shared from here: the generated clip is used
    monkeypatch.setattr("matanyone_engine.core.app.samples.checkout_root", lambda: tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["demo", "-o", str(out), "--frames", "4", "--max-size", "96"])
    assert result.exit_code == 0, result.output
    assert "generated" in result.output and "seeded:v1-pm" in result.output
    assert seen["pipeline"] is False  # torch on a CPU: the overlap does not pay (README)
    assert seen["warmup"] == 10
    alphas = sorted((out / "demo_input" / "alpha").iterdir())
    assert [a.name for a in alphas] == [f"{i:06d}.png" for i in range(4)]
    rgba = sorted((out / "demo_input" / "rgba").iterdir())
    assert len(rgba) == 4 and Image.open(rgba[0]).mode == "RGBA"
    assert (out / "demo_input_foreground.mp4").stat().st_size > 0
    first = np.asarray(Image.open(alphas[0]), dtype=np.float64)
    assert first.max() > first.min()  # a matte, not a constant image
