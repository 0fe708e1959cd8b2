#!/usr/bin/env bash
# The before/after pictures of docs/README.md, made with the real CLI (what users get):
# for each photo and mask, `pconv inpaint` with the bundled default model (--blend auto,
# i.e. Poisson), `--method telea` and `--method patchmatch`, then one side-by-side panel
# (input with the hole in magenta | default model | Telea | PatchMatch).
#
#   bash docs/make_pictures.sh [OUT]     # OUT defaults to docs/
#
# Needs the venv (pconv on PATH, OpenCV from the `baselines` extra), and for the large
# photo apt-get download + dpkg-deb (Debian's plasma-workspace-wallpapers 4:5.27.5-2,
# the same package bench/report_photos.sh uses; checked by its sha256). Prints the wall
# time of every pconv command. The mask of the large photo, docs/fallen-leaf-mask.png,
# is drawn here from a hand-placed polygon (LEAF below) and compared with the committed
# file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${1:-$here}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

timed() {  # timed LABEL COMMAND...: run it, print its wall time
  local label=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" >"$work/log" 2>&1 || { cat "$work/log"; return 1; }
  end=$(date +%s.%N)
  printf '  %-34s %6.1f s   %s %s\n' "$label" "$(echo "$end - $start" | bc)" \
    "$(grep -o 'wrote .*' "$work/log" | sed 's/^wrote [^ ]* //')" \
    "$(grep -o 'filled at scales [0-9/, ]*' "$work/log" | sed 's/ *$//')"
}

three() {  # three NAME PHOTO MASK: the default model, Telea and PatchMatch on PHOTO
  local name=$1 photo=$2 mask=$3
  echo "$name: $photo, mask $mask"
  timed "pconv inpaint (default model)" \
    pconv inpaint "$photo" --mask "$mask" -o "$work/$name-default.png"
  timed "pconv inpaint --method telea" \
    pconv inpaint "$photo" --mask "$mask" --method telea -o "$work/$name-telea.png"
  timed "pconv inpaint --method patchmatch" \
    pconv inpaint "$photo" --mask "$mask" --method patchmatch -o "$work/$name-patchmatch.png"
}

panel() {  # panel NAME PHOTO MASK OUTPUT [half]: the four pictures side by side
  python - "$@" "$work" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

name, photo, mask, output, *rest = sys.argv[1:]
work = Path(rest[-1])
layout = rest[0] if len(rest) > 1 else "row"
image = np.asarray(Image.open(photo).convert("RGB"))
hole = np.asarray(Image.open(mask).convert("L")) > 127
shown = image.copy()
shown[hole] = (0.45 * shown[hole] + 0.55 * np.array([255, 0, 255])).astype(np.uint8)
cells = [
    ("input, hole in magenta", shown),
    ("pconv inpaint (default model)", np.asarray(Image.open(work / f"{name}-default.png"))),
    ("--method telea", np.asarray(Image.open(work / f"{name}-telea.png"))),
    ("--method patchmatch", np.asarray(Image.open(work / f"{name}-patchmatch.png"))),
]
if layout == "detail":  # a 1:1 crop around the hole, 2x2
    rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
    top, bottom = max(rows[0] - 48, 0), min(rows[-1] + 49, hole.shape[0])
    left, right = max(cols[0] - 48, 0), min(cols[-1] + 49, hole.shape[1])
    cells = [(title, cell[top:bottom, left:right]) for title, cell in cells]
elif layout == "half":  # the whole photo at half size, 2x2
    cells = [(title, np.asarray(Image.fromarray(cell).reduce(2))) for title, cell in cells]
h, w = cells[0][1].shape[:2]
per_row = 4 if layout == "row" else 2
size = max(14, w // 40)
font = ImageFont.load_default(size=size)
strip = size + size // 2
gap = 4
n_rows = -(-len(cells) // per_row)
canvas = Image.new("RGB", (per_row * w + (per_row - 1) * gap, n_rows * (h + strip + gap) - gap),
                   (24, 24, 24))
draw = ImageDraw.Draw(canvas)
for index, (title, cell) in enumerate(cells):
    x = (index % per_row) * (w + gap)
    y = (index // per_row) * (h + strip + gap)
    draw.text((x + size // 3, y + size // 5), title, fill=(235, 235, 235), font=font)
    canvas.paste(Image.fromarray(cell), (x, y + strip))
if output.endswith(".png"):
    canvas.save(output, optimize=True)
else:
    canvas.save(output, quality=90, optimize=True, subsampling=0)
print(f"  wrote {output} ({canvas.size[0]}x{canvas.size[1]}, "
      f"{Path(output).stat().st_size / 1e6:.2f} MB)")
PY
}

# The large photo: "Fallen Leaf" by Martin Klapetek (KDE Plasma wallpaper, LGPLv3 per its
# metadata.json; Debian's copyright file for the package says GPL-2+), 2560x1600.
(cd "$work" && apt-get download -q plasma-workspace-wallpapers=4:5.27.5-2 >/dev/null 2>&1)
dpkg-deb -x "$work"/plasma-workspace-wallpapers_*.deb "$work/x"
leaf="$work/fallen-leaf.jpg"
cp "$work/x/usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg" "$leaf"
echo "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de  $leaf" \
  | sha256sum -c --quiet

# Its mask: the big maple leaf, a polygon traced by hand on the 2560x1600 photo, grown
# by 20 px (a 40 px outline) to cover the leaf's soft edge. 12 % of the pixels.
python - "$work/fallen-leaf-mask.png" <<'PY'
import sys

from PIL import Image, ImageDraw

LEAF = [(1737, 462), (1765, 560), (1850, 588), (1925, 600), (1942, 700), (1945, 850),
        (2000, 862), (2070, 780), (2140, 700), (2200, 620), (2224, 560), (2228, 640),
        (2218, 740), (2212, 815), (2322, 790), (2292, 860), (2262, 940), (2200, 1005),
        (2300, 1030), (2393, 1042), (2302, 1100), (2272, 1160), (2240, 1200), (2150, 1232),
        (2000, 1252), (1920, 1275), (1800, 1232), (1670, 1192), (1540, 1147), (1460, 1102),
        (1362, 1057), (1440, 990), (1400, 870), (1318, 792), (1450, 818), (1530, 868),
        (1600, 908), (1640, 904), (1665, 888), (1670, 800), (1655, 730), (1632, 668),
        (1700, 648), (1730, 540)]  # fmt: skip
mask = Image.new("L", (2560, 1600), 0)
draw = ImageDraw.Draw(mask)
draw.polygon(LEAF, fill=255)
draw.line([*LEAF, LEAF[0]], fill=255, width=40, joint="curve")
mask.save(sys.argv[1])
PY
if [[ -f "$here/fallen-leaf-mask.png" ]]; then
  python -c "import sys, numpy as np; from PIL import Image; a, b = (np.asarray(Image.open(p)) \
for p in sys.argv[1:]); sys.exit(not np.array_equal(a, b))" \
    "$work/fallen-leaf-mask.png" "$here/fallen-leaf-mask.png" \
    || echo "note: the drawn mask differs from docs/fallen-leaf-mask.png"
fi
cp "$work/fallen-leaf-mask.png" "$out/fallen-leaf-mask.png"

images="$root/examples/images"
masks="$root/examples/masks"
three rocket "$images/rocket.jpg" "$masks/rocket.png"
panel rocket "$images/rocket.jpg" "$masks/rocket.png" "$out/rocket.png"
three coffee "$images/coffee.jpg" "$masks/coffee.png"
panel coffee "$images/coffee.jpg" "$masks/coffee.png" "$out/coffee.png"
three fallen-leaf "$leaf" "$out/fallen-leaf-mask.png"
panel fallen-leaf "$leaf" "$out/fallen-leaf-mask.png" "$out/fallen-leaf.jpg" half
panel fallen-leaf "$leaf" "$out/fallen-leaf-mask.png" "$out/fallen-leaf-detail.jpg" detail
