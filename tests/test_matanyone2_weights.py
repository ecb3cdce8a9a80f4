"""`--weights official2`: MatAnyone 2 resolved the way `official` resolves MatAnyone 1 (local cache,
else a checked download, offline one line saying where to put the file), loaded with the strict
key/shape check. No machine here reaches the Hub, so the download is tested against a stand-in."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from matanyone_engine.core.artifacts import checkpoints
from matanyone_engine.core.artifacts.weights import parse_weights
from matanyone_engine.core.engine.errors import WeightsError


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


@pytest.mark.parametrize("ref", ["official2", "matanyone2"])
def test_offline_is_one_line_saying_where_matanyone2_goes(ref, cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        parse_weights(ref)
    message = str(info.value)
    assert "\n" not in message
    assert f"the official MatAnyone 2 checkpoint is not in {cache / 'weights' / 'matanyone2'}" in message
    assert "MatAnyone2/releases/download/v1.0.0/matanyone2.pth" in message
    assert "huggingface.co/PeiqingYang/MatAnyone2" in message and "--weights" in message


def test_the_two_models_never_share_a_file(cache):
    folder = cache / "weights"
    (folder / "matanyone2").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"one")
    (folder / "matanyone2" / "matanyone2.pth").write_bytes(b"two")
    assert parse_weights("official").path == folder / "model.safetensors"
    assert parse_weights("official2").path == folder / "matanyone2" / "matanyone2.pth"


class _FakeHub:
    """Stands in for huggingface_hub: serves ``payload``, publishing ``published`` as its LFS sha256
    (None: a file with no LFS entry); ``fail`` is raised by the download instead."""

    def __init__(self, payload: bytes, published: str | None, fail: BaseException | None = None):
        self.payload, self.published, self.fail, self.calls = payload, published, fail, []

    def get_paths_info(self, repo, paths):
        lfs = None if self.published is None else SimpleNamespace(sha256=self.published, size=len(self.payload))
        return [SimpleNamespace(path=p, size=len(self.payload), lfs=lfs) for p in paths]

    def hf_hub_download(self, repo, filename, local_dir):
        self.calls.append((repo, filename))
        if self.fail is not None:
            raise self.fail
        path = Path(local_dir) / filename
        path.write_bytes(self.payload)
        return str(path)


def _install(monkeypatch, hub: _FakeHub) -> None:
    import huggingface_hub

    for name in ("get_paths_info", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, getattr(hub, name))


def test_download_lands_in_its_own_folder_checked_and_recorded(cache, monkeypatch):
    payload = b"matanyone 2 weights"
    hub = _FakeHub(payload, hashlib.sha256(payload).hexdigest())
    _install(monkeypatch, hub)
    path = checkpoints.official_checkpoint(model=checkpoints.MATANYONE2)
    assert hub.calls == [("PeiqingYang/MatAnyone2", "model.safetensors")]
    assert path == cache / "weights" / "matanyone2" / "model.safetensors"
    assert path.with_name("model.safetensors.sha256").read_text().split()[0] == hub.published
    assert parse_weights("official2").path == path  # second time: from the cache, no download
    assert len(hub.calls) == 1
    path.write_bytes(b"edited later")
    with pytest.raises(WeightsError, match="checksum"):
        parse_weights("official2")


def test_a_download_that_does_not_match_the_published_sha256_is_deleted(cache, monkeypatch):
    _install(monkeypatch, _FakeHub(b"truncated", "0" * 64))
    with pytest.raises(WeightsError) as info:
        parse_weights("official2")
    assert str(info.value) == (
        f"the downloaded model.safetensors from huggingface.co/PeiqingYang/MatAnyone2 has sha256 "
        f"{hashlib.sha256(b'truncated').hexdigest()[:12]}... but the Hub publishes 000000000000...; it was deleted: "
        "run again, or download https://github.com/pq-yang/MatAnyone2/releases/download/v1.0.0/matanyone2.pth by hand"
    )
    assert not (cache / "weights" / "matanyone2" / "model.safetensors").exists()
    assert not (cache / "weights" / "matanyone2" / "model.safetensors.sha256").exists()


def test_a_file_the_hub_publishes_no_sha256_for_is_not_downloaded(cache, monkeypatch):
    hub = _FakeHub(b"weights", None)
    _install(monkeypatch, hub)
    with pytest.raises(WeightsError) as info:
        parse_weights("official")
    assert str(info.value) == (
        "huggingface.co/PeiqingYang/MatAnyone publishes no sha256 for model.safetensors, so a download could not be "
        "checked; download https://github.com/pq-yang/MatAnyone/releases/download/v1.0.0/matanyone.pth by hand into "
        f"{cache / 'weights'}"
    )
    assert hub.calls == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
    ],
)
def test_a_download_that_cannot_be_written_says_why(cache, monkeypatch, error, reason):
    """Disk full or no permission is the machine's problem, not the network's: the message says
    where and why, and the cause stays chained."""
    payload = b"weights"
    _install(monkeypatch, _FakeHub(payload, hashlib.sha256(payload).hexdigest(), fail=error))
    with pytest.raises(WeightsError) as info:
        parse_weights("official2")
    assert str(info.value) == (
        f"cannot write the MatAnyone 2 checkpoint to {cache / 'weights' / 'matanyone2'}: {reason}; free space there, "
        "fix its permissions, or set MATANYONE_CACHE to another folder"
    )
    assert info.value.__cause__ is error


def test_a_network_failure_keeps_its_reason_in_the_line(cache, monkeypatch):
    payload = b"weights"
    error = ConnectionError("Failed to resolve 'huggingface.co'")
    _install(monkeypatch, _FakeHub(payload, hashlib.sha256(payload).hexdigest(), fail=error))
    with pytest.raises(WeightsError) as info:
        parse_weights("official2")
    message = str(info.value)
    assert message.startswith("the official MatAnyone 2 checkpoint is not in ")
    assert message.endswith("(download failed: ConnectionError: Failed to resolve 'huggingface.co')")
    assert "\n" not in message


def test_matanyone2_checkpoint_loads_with_the_strict_check(cache, torch_net):
    """MatAnyone 2's network and parameter names are MatAnyone 1's, so its checkpoint goes through
    the same strict loader: a complete state dict loads, a wrong one names every problem."""
    import torch
    from safetensors.torch import save_file

    from matanyone_engine.backends.torch.network import load_network

    folder = cache / "weights" / "matanyone2"
    folder.mkdir(parents=True)
    state = {k: v.clone() * 0.5 if v.is_floating_point() else v.clone() for k, v in torch_net.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    net = load_network("official2")
    torch.testing.assert_close(net.pixel_encoder.conv1.weight, state["pixel_encoder.conv1.weight"])
    del state["mask_decoder.pred_mat.bias"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match="missing: mask_decoder.pred_mat.bias"):
        load_network("official2")
