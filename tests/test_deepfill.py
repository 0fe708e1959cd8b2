"""DeepFillv2: layers and the family against independent references, MMagic's layout and weights.

References: per-window loops for the gated convolution, torch's own spectral norm,
a per-query/per-patch loop for contextual attention (``deepfill_reference.py``), and
a functional MMagic generator run on raw BGR weights (``deepfill_reference.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from deepfill_reference import mmagic_deepfillv2, naive_contextual_attention

from pconv_cli.models import build_model
from pconv_cli.models.deepfillv2.network import DeepFillDiscriminator, DeepFillv2Config
from pconv_cli.nn.attention import contextual_attention
from pconv_cli.nn.gated_conv import GatedConv2d
from pconv_cli.nn.spectral_norm import SpectralNormConv2d
from pconv_cli.weights import load_model, open_weights

DATA = Path(__file__).parent / "data"


def _keys() -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in (DATA / "mmagic_deepfillv2_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        keys[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return keys


# --------------------------------------------------------------------------- layout


def test_generator_and_discriminator_keys_and_shapes_equal_mmagic():
    keys = _keys()
    generator = {
        k.removeprefix("generator."): v for k, v in keys.items() if k.startswith("generator.")
    }
    disc = {k.removeprefix("disc."): v for k, v in keys.items() if k.startswith("disc.")}
    assert len(generator) == 85 and len(disc) == 24
    with torch.device("meta"):
        model = build_model("deepfillv2")
        discriminator = DeepFillDiscriminator(DeepFillv2Config())
    assert {k: tuple(v.shape) for k, v in model.net.state_dict().items()} == generator
    assert {k: tuple(v.shape) for k, v in discriminator.state_dict().items()} == disc
    parameters = sum(p.numel() for p in model.net.parameters())
    assert parameters == sum(int(np.prod(s)) for k, s in generator.items() if "fuse" not in k)
    assert parameters == 4_414_908


# --------------------------------------------------------------------------- gated conv


def _naive_gated(x, weight, bias, *, stride, dilation, feature_act):
    """Per output pixel: reflect-padded window dot weights, then ELU(feature) * sigmoid(gate)."""
    n, _, h, w = x.shape
    o, _, k, _ = weight.shape
    p = dilation * (k - 1) // 2

    def reflect(i, size):
        return -i if i < 0 else (2 * (size - 1) - i if i >= size else i)

    out_h = (h + 2 * p - dilation * (k - 1) - 1) // stride + 1
    out_w = (w + 2 * p - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((n, o, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            rows = [reflect(i * stride + dilation * a - p, h) for a in range(k)]
            cols = [reflect(j * stride + dilation * b - p, w) for b in range(k)]
            window = x[:, :, rows][:, :, :, cols]  # (n, c, k, k)
            y[:, :, i, j] = np.einsum("nckl,ockl->no", window, weight) + bias
    feature, gate = y[:, : o // 2], y[:, o // 2 :]
    if feature_act:
        feature = np.where(feature > 0, feature, np.expm1(feature))
    return feature / (1 + np.exp(-gate))


@pytest.mark.parametrize(
    "stride,dilation,feature_act,kernel", [(1, 1, True, 3), (2, 1, True, 5), (1, 2, False, 3)]
)
def test_gated_conv_equals_the_naive_reference(stride, dilation, feature_act, kernel):
    torch.manual_seed(0)
    layer = GatedConv2d(
        3, 4, kernel, stride=stride, dilation=dilation, feature_activation=feature_act
    )
    layer.double()
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    conv = layer.conv.conv
    expected = _naive_gated(x.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(),
                            stride=stride, dilation=dilation, feature_act=feature_act)  # fmt: skip
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 4)])
def test_banded_inference_equals_one_pass(stride, dilation, upsample):
    torch.manual_seed(1)
    layer = GatedConv2d(5, 6, 3, stride=stride, dilation=dilation)
    x = torch.randn(2, 5, 23, 19)
    with torch.no_grad():
        whole = layer(x, upsample=upsample)
        layer.band_bytes = 1  # one output row per band
        banded = layer(x, upsample=upsample)
    assert banded.shape == whole.shape
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- spectral norm


def test_spectral_norm_conv_equals_torch_spectral_norm():
    torch.manual_seed(2)
    reference = torch.nn.utils.spectral_norm(torch.nn.Conv2d(4, 8, 5, stride=2, padding=2))
    ours = SpectralNormConv2d(4, 8, 5, stride=2, padding=2)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 4, 16, 16)
    for _ in range(3):  # training: one power iteration per forward
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.weight_u, reference.weight_u)
    ours.eval(), reference.eval()
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-6)
    assert set(ours.state_dict()) == {"weight_orig", "bias", "weight_u", "weight_v"}
    # the largest singular value of the normalised weight is 1 (power iteration converged)
    ours.train()
    with torch.no_grad():
        for _ in range(2000):
            ours.normalized_weight()
    matrix = ours.normalized_weight().detach().reshape(8, -1)
    assert torch.linalg.matrix_norm(matrix, ord=2).item() == pytest.approx(1.0, abs=1e-4)


def test_spectral_norm_stays_float32_under_bf16_autocast():
    layer = SpectralNormConv2d(4, 8, 5, stride=2, padding=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(2, 4, 16, 16))
    assert torch.isfinite(out.float()).all()
    assert layer.weight_u.dtype == torch.float32
    assert torch.linalg.vector_norm(layer.weight_u).item() == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- contextual attention


def _features(h, w, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, c, h, w, generator=g, dtype=torch.float64)


def _hole(h, w, boxes):
    hole = torch.zeros(1, 1, h, w, dtype=torch.float64)
    for top, left, bottom, right in boxes:
        hole[..., top:bottom, left:right] = 1
    return hole


@pytest.mark.parametrize("h,w,boxes", [(8, 8, [(2, 2, 3, 3)]), (12, 10, [(0, 4, 6, 10)]),
                                        (10, 14, [(4, 0, 8, 5), (0, 10, 3, 14)])])  # fmt: skip
def test_contextual_attention_equals_the_naive_loop(h, w, boxes):
    x, hole = _features(h, w), _hole(h, w, boxes)
    expected, expected_attention = naive_contextual_attention(x[0].numpy(), hole[0, 0].numpy())
    got, attention = contextual_attention(x, 1 - hole, return_attention=True)
    np.testing.assert_allclose(got[0].numpy(), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(attention[0].numpy(), expected_attention, atol=1e-12)


def test_chunked_attention_equals_unchunked():
    x = _features(24, 20, c=6, seed=3).float()
    hole = _hole(24, 20, [(6, 4, 16, 12)]).float()
    whole = contextual_attention(x, 1 - hole, max_bytes=None)
    for budget in (1, 5_000, 60_000):  # 1 query per tile, small tiles, whole rows
        torch.testing.assert_close(contextual_attention(x, 1 - hole, max_bytes=budget), whole,
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_masked_patches_are_never_selected():
    h, w = 16, 16
    x, hole = _features(h, w, seed=4), _hole(h, w, [(4, 6, 10, 12)])
    _, attention = contextual_attention(x, 1 - hole, return_attention=True)
    small = F.max_pool2d(hole[0, :, ::2, ::2], 3, 1, 1).reshape(-1) > 0
    assert small.any() and not small.all()
    assert torch.count_nonzero(attention[0][:, small]) == 0
    torch.testing.assert_close(attention[0].sum(1), torch.ones(64, dtype=torch.float64))
    # without any valid patch there is nothing to copy: zeros, not NaN
    empty = contextual_attention(x, torch.zeros_like(hole))
    assert torch.count_nonzero(empty) == 0


def test_attention_follows_autocast_safely():
    x, hole = _features(8, 8).float(), _hole(8, 8, [(2, 2, 5, 5)]).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = contextual_attention(x.bfloat16(), 1 - hole)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


# --------------------------------------------------------------------------- MMagic weights


def _mmagic_checkpoint(width_seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(width_seed)
    state = {}
    for key, shape in _keys().items():
        if key.endswith("fuse_kernel"):
            state[key] = torch.eye(3).view(1, 1, 3, 3)
        elif key.endswith("weight_u") or key.endswith("weight_v"):
            state[key] = F.normalize(torch.randn(shape, generator=g), dim=0)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]  # large enough to survive 2 x 17 gated layers
            state[key] = torch.randn(shape, generator=g) * (4.0 / fan_in) ** 0.5
        else:
            state[key] = (torch.rand(shape, generator=g) - 0.5) * 0.2
    meta = {"mmedit_version": "0.4.0", "iter": 1000000}
    return {"meta": meta, "state_dict": state}


@pytest.fixture(scope="module")
def mmagic_file(tmp_path_factory) -> Path:
    path = (
        tmp_path_factory.mktemp("deepfill") / "deepfillv2_256x256_8x2_places_20200619-10d15793.pth"
    )
    torch.save(_mmagic_checkpoint(), path)
    return path


@pytest.mark.slow
def test_converted_net_on_rgb_equals_raw_mmagic_weights_on_bgr(mmagic_file):
    weights = open_weights(str(mmagic_file))
    assert (weights.family, weights.source_format) == ("deepfillv2", "mmagic-deepfillv2")
    assert weights.config == DeepFillv2Config(width=1.0)
    assert weights.module_state("discriminator") is not None  # kept for --init
    model = load_model(str(mmagic_file)).double()

    raw = torch.load(mmagic_file, weights_only=True)["state_dict"]
    raw = {
        k.removeprefix("generator."): v.double()
        for k, v in raw.items()
        if k.startswith("generator.")
    }
    g = torch.Generator().manual_seed(5)
    image = torch.randint(0, 256, (1, 3, 80, 72), generator=g).double() / 255  # RGB in [0, 1]
    hole = _hole(80, 72, [(20, 16, 52, 44)])
    bgr = (image.flip(1) * 255 - 127.5) / 127.5
    with torch.no_grad():
        _, stage2 = mmagic_deepfillv2(raw, bgr * (1 - hole), hole)
        expected = (stage2.flip(1) * 127.5 + 127.5) / 255  # back to RGB [0, 1]
        got = model(image, 1 - hole)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert stage2[..., 20:52, 16:44].std() > 0.05  # not a trivial output


def test_converted_discriminator_on_rgb_equals_raw_on_bgr(mmagic_file):
    weights = open_weights(str(mmagic_file))
    ours = DeepFillDiscriminator(DeepFillv2Config()).double().eval()
    ours.load_state_dict(weights.module_state("discriminator"))
    raw = torch.load(mmagic_file, weights_only=True)["state_dict"]
    reference = DeepFillDiscriminator(DeepFillv2Config()).double().eval()
    reference.load_state_dict(
        {k.removeprefix("disc."): v for k, v in raw.items() if k.startswith("disc.")}
    )
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    hole = _hole(64, 64, [(10, 10, 30, 40)])
    with torch.no_grad():
        torch.testing.assert_close(ours(torch.cat([x, hole], 1)),
                                   reference(torch.cat([x.flip(1), hole], 1)))  # fmt: skip


def test_init_from_an_mmagic_file_starts_both_nets_from_it(mmagic_file, tmp_path):
    from typer.testing import CliRunner

    from pconv_cli.cli import app
    from pconv_cli.weights import read_checkpoint

    examples = Path(__file__).resolve().parents[1] / "examples" / "images"
    run = tmp_path / "ft"
    result = CliRunner().invoke(app, [
        "finetune", "--init", str(mmagic_file), "--data", str(examples), "--out", str(run),
        "--steps", "1", "--size", "72", "--batch", "1", "--workers", "0", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    start = open_weights(str(mmagic_file))
    trained = read_checkpoint(run / "last.safetensors")
    assert trained.family == "deepfillv2" and trained.config == start.config
    for name in ("discriminator", None):
        before = start.module_state(name) if name else start.net_state()
        after = trained.module_state(name) if name else trained.net_state()
        key = "conv1.conv.weight_orig" if name else "stage2.decoder.dec7.conv.conv.weight"
        change = (after[key] - before[key]).abs().max().item()
        assert 0 < change < 1e-3, (name, change)  # one Adam step (lr 1e-4) away from the file


def test_weights_convert_keeps_the_discriminator(mmagic_file, tmp_path):
    from typer.testing import CliRunner

    from pconv_cli.cli import app
    from pconv_cli.weights import read_checkpoint

    out = tmp_path / "deepfill.safetensors"
    result = CliRunner().invoke(app, ["weights", "convert", str(mmagic_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    written, source = read_checkpoint(out), open_weights(str(mmagic_file))
    assert written.family == "deepfillv2" and written.state.keys() == source.state.keys()
    assert all(torch.equal(written.state[k], source.state[k]) for k in source.state)


def test_loading_in_a_fresh_process(tmp_path):
    """Building on the meta device must not run torch's decompositions (they import dynamo)."""
    import subprocess
    import sys

    from pconv_cli.weights import save_checkpoint

    path = save_checkpoint(
        tmp_path / "deepfill.safetensors", build_model("deepfillv2", width=0.125)
    )
    code = f"from pconv_cli.weights import load_model; print(load_model({str(path)!r}).family)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "deepfillv2"
