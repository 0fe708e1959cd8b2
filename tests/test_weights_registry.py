"""The weights registry: entries, hub-cache downloads (never real ones), offline errors, CLI.

Every test points ``torch.hub.get_dir`` at a temp folder and replaces the
downloader, so nothing touches the network or the user's cache.
"""

from __future__ import annotations

import dataclasses
import email.message
import hashlib
import io
import urllib.error
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import pconv_cli.weights as W
from pconv_cli.cli import app
from pconv_cli.models import build_model


def _tiny_mmagic_file(path: Path) -> Path:
    """A small MMagic-format PConv checkpoint (3 levels, width 1/8) with mask updaters."""
    net = build_model("pconv", layers=3, width=0.125).net
    state = {}
    for key, value in net.state_dict().items():
        state[f"generator.{key}"] = value
        if key.endswith("conv.weight"):
            state[f"generator.{key}_mask_updater"] = torch.ones_like(value)
    torch.save({"meta": {"iter": 1}, "state_dict": state}, path)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """torch.hub's cache dir in tmp; a download that fails loudly if anything asks for one."""
    hub_dir = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return hub_dir


class _FakeDownload:
    """Stands in for ``torch.hub.download_url_to_file``: copies a local file to ``dst``."""

    def __init__(self, source: Path | None, error: Exception | None = None):
        self.source, self.error, self.calls = source, error, []

    def __call__(self, url, dst, hash_prefix=None, progress=True):
        self.calls.append((url, dst, hash_prefix))
        if self.error is not None:
            raise self.error
        data = self.source.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if hash_prefix is not None and not digest.startswith(hash_prefix):
            raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "{digest}")')
        Path(dst).write_bytes(data)


def test_registry_entries_carry_their_metadata():
    names = [e.name for e in W.list_weights()]
    # the PConv and DeepFillv2 entries first, in this order; other families' entries
    # (registered by their packages) are checked in their own tests
    core = [e for e in W.list_weights() if e.family in ("pconv_unet", "deepfillv2")]
    assert [e.name for e in core] == names[: len(core)] == [
        "pconv-bsds300", "mmagic-places", "mmagic-celeba", "naoto0804-places2",
        "mmagic-deepfillv2-places", "mmagic-deepfillv2-celeba",
    ]  # fmt: skip
    for entry in W.list_weights():
        assert entry.source_format in W.list_converters()
    for entry in core:
        if entry.bundled:  # pconv's own (tests/test_default_model.py)
            continue
        assert entry.train_size == 256 and entry.url.endswith(entry.filename)
        assert entry.config["normalization"] == entry.normalization  # what the converter gives
        if entry.family == "pconv_unet":
            assert entry.config["layers"] == 7
        else:
            assert entry.family == "deepfillv2" and entry.config["width"] == 1.0
    for name, prefix, scores in (
        ("mmagic-deepfillv2-places", "10d15793", {"l1": 8.635, "psnr": 22.398, "ssim": 0.815}),
        ("mmagic-deepfillv2-celeba", "c96e5f12", {"l1": 5.411, "psnr": 25.721, "ssim": 0.871}),
    ):
        entry = W.get_weights(name)
        assert entry.filename.endswith(f"-{prefix}.pth") and entry.sha256_prefix == prefix
        assert entry.url.startswith("https://download.openmmlab.com/mmediting/inpainting/deepfillv2/")
        assert next(iter(entry.metrics.values())) == scores and entry.colour_order == "bgr"
    places, celeba = W.get_weights("mmagic-places"), W.get_weights("mmagic-celeba")
    for entry in (places, celeba):
        # MMagic names end in the first 8 hex digits of the file's sha256.
        assert entry.filename.endswith(f"-{entry.sha256_prefix}.pth")
        assert (entry.colour_order, entry.normalization) == ("bgr", "minus_one_one")
        assert entry.url.startswith("https://download.openmmlab.com/mmediting/inpainting/pconv/")
    assert places.metrics["places365-val"] == {"l1": 8.776, "psnr": 22.762, "ssim": 0.801}
    assert celeba.metrics["celeba-val"] == {"l1": 5.990, "psnr": 25.404, "ssim": 0.853}
    naoto = W.get_weights("naoto0804-places2")
    assert (naoto.normalization, naoto.colour_order, naoto.sha256_prefix) == (
        "imagenet",
        "rgb",
        None,
    )
    with pytest.raises(W.WeightsError, match="unknown weights"):
        W.get_weights("nope")


def test_named_weights_download_once_into_the_hub_cache(hub, tmp_path, monkeypatch):
    source = _tiny_mmagic_file(tmp_path / "tiny.pth")
    entry = dataclasses.replace(W.ZOO["mmagic-places"], sha256_prefix=_sha256(source)[:8])
    monkeypatch.setitem(W.ZOO, "mmagic-places", entry)
    fake = _FakeDownload(source)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)

    weights = W.open_weights("mmagic-places", progress=False)
    cached = hub / "checkpoints" / entry.filename
    assert cached.is_file()
    assert fake.calls == [(entry.url, str(cached), entry.sha256_prefix)]
    assert (weights.metadata["name"], weights.source_format, weights.config.layers) == (
        "mmagic-places",
        "mmagic",
        3,
    )
    model = W.load_model("mmagic-places")  # the second time comes from the cache
    assert len(fake.calls) == 1
    assert not model.training and model.family == "pconv_unet"


def test_offline_error_says_url_cache_path_and_weights_option(hub, monkeypatch):
    fake = _FakeDownload(None, urllib.error.URLError("[Errno -3] no network"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    entry = W.ZOO["mmagic-celeba"]
    with pytest.raises(W.WeightsError) as info:
        W.open_weights("mmagic-celeba")
    message = str(info.value)
    assert entry.url in message
    assert str(hub / "checkpoints" / entry.filename) in message
    assert "--weights" in message and "no network" in message
    assert "\n" not in message


def test_hash_mismatch_on_download_leaves_nothing_in_the_cache(hub, tmp_path, monkeypatch):
    """The real torch.hub downloader, fed bytes in memory, checks the sha256 prefix."""
    payload = _tiny_mmagic_file(tmp_path / "tiny.pth").read_bytes()

    class _Response(io.BytesIO):
        def info(self):
            headers = email.message.Message()
            headers["Content-Length"] = str(len(payload))
            return headers

        def __enter__(self):
            return self

    if not hasattr(torch.hub, "urlopen"):
        pytest.skip("torch.hub no longer imports urlopen at module level")
    monkeypatch.undo()  # back to the real download_url_to_file ...
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))  # ... with the tmp cache
    monkeypatch.setattr(torch.hub, "urlopen", lambda request, **kw: _Response(payload))
    with pytest.raises(W.WeightsError, match=r"failed its sha256 check \(expected 1ffed0e8"):
        W.fetch_weights(W.ZOO["mmagic-places"], progress=False)
    assert list((hub / "checkpoints").iterdir()) == []


def test_hand_placed_file_with_wrong_hash_is_rejected(hub, tmp_path):
    entry = W.ZOO["mmagic-places"]
    cached = hub / "checkpoints" / entry.filename
    cached.parent.mkdir(parents=True)
    _tiny_mmagic_file(cached)
    with pytest.raises(W.WeightsError, match=r"does not match mmagic-places.*delete it"):
        W.open_weights("mmagic-places")


def test_entry_without_published_hash_downloads_unchecked(hub, tmp_path, monkeypatch):
    net = build_model("pconv", layers=2, width=0.125).net
    state = {}
    for key, value in net.state_dict().items():
        key = key.replace("encoder.enc", "enc_").replace("decoder.dec", "dec_")
        key = key.replace(".conv.", ".conv.input_conv.")
        if key == "enc_1.conv.input_conv.bias":
            continue
        state[key] = value
    source = tmp_path / "1000000.pth"
    torch.save({"n_iter": 1000000, "model": state}, source)
    fake = _FakeDownload(source)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    weights = W.open_weights("naoto0804-places2")
    assert fake.calls[0][2] is None
    assert (weights.source_format, weights.config.normalization) == ("naoto0804", "imagenet")


def test_a_file_path_wins_over_a_registry_name(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny_mmagic_file(tmp_path / "mmagic-places")
    weights = W.open_weights("mmagic-places")
    assert "name" not in weights.metadata and weights.source_format == "mmagic"


# --------------------------------------------------------------------------- CLI


def test_weights_list_prints_the_registry(hub):
    result = CliRunner().invoke(app, ["weights", "list"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("mmagic-places", "mmagic-celeba", "naoto0804-places2", "22.762", "0.853"):
        assert text in result.output
    assert "download.openmmlab.com" in result.output
    assert str(hub / "checkpoints") in result.output


def test_weights_download_and_convert_cli(hub, tmp_path, monkeypatch):
    source = _tiny_mmagic_file(tmp_path / "tiny.pth")
    entry = dataclasses.replace(W.ZOO["mmagic-celeba"], sha256_prefix=_sha256(source)[:8])
    monkeypatch.setitem(W.ZOO, "mmagic-celeba", entry)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _FakeDownload(source))
    runner = CliRunner()
    result = runner.invoke(app, ["weights", "download", "mmagic-celeba"])
    assert result.exit_code == 0, result.output
    assert (hub / "checkpoints" / entry.filename).is_file()

    out = tmp_path / "celeba.safetensors"
    result = runner.invoke(app, ["weights", "convert", "mmagic-celeba", "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = W.read_checkpoint(out)  # what training's --init reads
    assert written.metadata["original_format"] == "mmagic"
    assert written.metadata["converted_from"] == entry.filename
    assert written.metadata["name"] == "mmagic-celeba" and written.family == "pconv_unet"
    converted = W.open_weights("mmagic-celeba").state
    assert written.state.keys() == converted.keys()
    assert all(torch.equal(written.state[k], converted[k]) for k in converted)

    monkeypatch.setattr(
        torch.hub, "download_url_to_file", _FakeDownload(None, urllib.error.URLError("offline"))
    )
    result = runner.invoke(app, ["weights", "download", "naoto0804-places2"])
    assert result.exit_code == 1
    assert "offline" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- download sizes

_KEY_LISTS = {
    "mmagic-places": "mmagic_pconv_keys.txt",
    "mmagic-celeba": "mmagic_pconv_keys.txt",
    "mmagic-deepfillv2-places": "mmagic_deepfillv2_keys.txt",
    "migan-512-places2": "migan_512_keys.txt",
    "migan-256-places2": "migan_256_keys.txt",
    "sunnerli-pconv-places365": "sunnerli_pconv_keys.txt",
    "sunnerli-unet-places365-v1": "sunnerli_unet_keys.txt",
}


def _float32_megabytes(key_list: Path) -> float:
    """Size of the float32 tensors a publisher's key list names (``key (d0, d1, ...)``)."""
    import math
    import re

    total = 0
    for line in key_list.read_text().splitlines():
        found = re.search(r"\(([\d, ]*)\)\s*$", line)
        if found:
            total += math.prod(int(d) for d in found.group(1).split(",") if d.strip())
    return total * 4 / 1e6


@pytest.mark.parametrize("name", sorted(_KEY_LISTS))
def test_download_size_is_the_publishers_tensors(name):
    data = Path(__file__).parent / "data"
    assert W.ZOO[name].download_mb == pytest.approx(
        _float32_megabytes(data / _KEY_LISTS[name]), rel=0.005
    )


def test_weights_list_says_what_a_download_costs(hub):
    result = CliRunner().invoke(app, ["weights", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "(downloads 206 MB)" in result.output  # MMagic's PConv U-Net
    assert "(downloads 30 MB)" in result.output  # MI-GAN 512
    assert "size unknown" in result.output  # big-lama: its checkpoint holds more
    assert "Apache-2.0 (advimman/lama)" in result.output
