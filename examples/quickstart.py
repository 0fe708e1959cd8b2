"""Quick start of the core library: the PConv U-Net on a bundled photo.

    python examples/quickstart.py [--out runs/quickstart]

Loads ``examples/images/chelsea.jpg`` (any size works: the net pads internally),
punches free-form holes into it, runs the bundled default model (``pconv-bsds300``,
a half-width 7-level PConv U-Net; no download) and writes input | mask | raw output |
composite to OUT. It shows the API, the mask convention and that known pixels come
through the composite bit for bit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def stroke_mask(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A few thick random strokes; True = hole (what a mask file shows in white)."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(4):
        points = [tuple(rng.integers(0, (width, height))) for _ in range(4)]
        brush = int(rng.integers(8, 20))
        draw.line([tuple(map(int, p)) for p in points], fill=255, width=brush, joint="curve")
    return np.asarray(canvas) > 127


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=HERE / "images" / "chelsea.jpg")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    args = parser.parse_args()

    import torch

    from pconv_cli.models import composite
    from pconv_cli.weights import DEFAULT_WEIGHTS, load_model

    photo = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32) / 255.0
    height, width = photo.shape[:2]
    hole = stroke_mask(width, height)

    image = torch.from_numpy(photo).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W) in [0, 1]
    mask = torch.from_numpy(~hole).float()[None, None]  # (1, 1, H, W), 1 = valid, 0 = hole

    model = load_model(DEFAULT_WEIGHTS, device="cpu")  # eval mode, float32
    start = time.perf_counter()
    with torch.inference_mode():
        output = model(image, mask)
    elapsed = time.perf_counter() - start
    result = composite(image, output, mask)

    known = mask.expand_as(image).bool()
    assert torch.equal(result[known], image[known]), "composite must keep known pixels"

    def to_pil(t: torch.Tensor) -> Image.Image:
        array = t[0].clamp(0, 1).permute(1, 2, 0).numpy()
        return Image.fromarray((array * 255.0 + 0.5).astype(np.uint8))

    tiles = [
        to_pil(image * mask),
        Image.fromarray((hole * 255).astype(np.uint8)).convert("RGB"),
        to_pil(output),
        to_pil(result),
    ]
    sheet = Image.new("RGB", (width * len(tiles), height))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (i * width, 0))
    args.out.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out / "quickstart.png")
    Image.fromarray((hole * 255).astype(np.uint8)).save(args.out / "mask.png")
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.image.name} {width}x{height}, hole {hole.mean():.1%}: {DEFAULT_WEIGHTS} "
        f"({params:,} parameters) forward in {elapsed:.2f} s -> {args.out / 'quickstart.png'}"
    )


if __name__ == "__main__":
    main()
