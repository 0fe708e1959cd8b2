#!/usr/bin/env bash
# The report photo set of bench/eval_default.py: 30 photographs that the default model
# never saw and that no checkpoint or variant was chosen on. Every photograph (not the
# illustrations or renders) of Debian's mate-backgrounds 1.26.0-1 (nature/, 12) and
# plasma-workspace-wallpapers 4:5.27.5-2 (11, the 2560x1600 files), the colour photos
# bundled with scikit-image (astronaut, chelsea, coffee, rocket, motorcycle_left) and
# scikit-learn's two sample images (china, flower). The list was fixed before any score.
#
#   bash bench/report_photos.sh DIR     # needs apt-get download, dpkg-deb and the venv
set -euo pipefail
out=${1:?usage: bench/report_photos.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q mate-backgrounds=1.26.0-1 \
    plasma-workspace-wallpapers=4:5.27.5-2 >/dev/null)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
share="$work/x/usr/share"
for name in Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm \
    TwoWings Wood YellowFlower; do
  cp "$share/backgrounds/mate/nature/$name.jpg" "$out/mate-$name.jpg"
done
for name in BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite \
    OneStandsOut Path summer_1am; do
  cp "$share/wallpapers/$name/contents/images/2560x1600.jpg" "$out/plasma-$name.jpg"
done
python - "$out" <<'PY'
import shutil, sys
from pathlib import Path
import skimage
out = Path(sys.argv[1])
data = Path(skimage.__file__).parent / "data"
for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"):
    shutil.copy(data / name, out / f"skimage-{name}")
try:
    import sklearn
    images = Path(sklearn.__file__).parent / "datasets" / "images"
except ImportError:  # sklearn's package may fail to import (joblib); its files are there
    import importlib.util
    images = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"
for name in ("china.jpg", "flower.jpg"):
    shutil.copy(images / name, out / f"sklearn-{name}")
PY
(cd "$out" && sha256sum -c --quiet "$here/report_photos.sha256")
echo "$(ls "$out" | wc -l) photos in $out"
