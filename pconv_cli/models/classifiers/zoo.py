"""torchvision's weights enums as zoo entries, made on demand (torch-free until one is asked for).

``resnet50.IMAGENET1K_V1`` is the entry of ``torchvision.models.ResNet50_Weights.IMAGENET1K_V1``
(also ``pd_resnet50.IMAGENET1K_V1``: the same file, for the partial-padding family): its
URL, the hash prefix in its file name (torch.hub's convention), ImageNet's 1000 classes.
``pconv classify train --weights IMAGENET1K_V1`` and ``pconv classify eval --weights
resnet50.IMAGENET1K_V1`` fetch it through the same hub cache as every published weights.
"""

from __future__ import annotations

import re

from pconv_cli.weights.entry import WeightsEntry

__all__ = ["resolve_weights"]

PREFIX = "pd_"
_HASH = re.compile(r"-([0-9a-f]{8,})\.pth$")


def resolve_weights(name: str) -> WeightsEntry | None:
    """The entry for ``<arch>.<WEIGHTS>`` (``pd_`` arch prefix for partial padding), or None."""
    family, dot, weights_name = name.partition(".")
    if not dot or not weights_name.isidentifier():
        return None
    arch = family.removeprefix(PREFIX)
    try:
        import torchvision

        weights = torchvision.models.get_model_weights(arch)[weights_name]
    except (KeyError, ValueError, ImportError):
        return None
    found = _HASH.search(weights.url)
    classes = len(weights.meta.get("categories") or ()) or 1000
    return WeightsEntry(
        name=name,
        url=weights.url,
        sha256_prefix=found.group(1) if found else None,
        source_format="state-dict",
        family=family,
        config={"arch": arch, "partial_padding": family.startswith(PREFIX), "num_classes": classes},
        dataset="ImageNet-1k",
        description=f"torchvision's {type(weights).__name__}.{weights_name}",
        train_size=224,
        normalization="imagenet",
        metrics={"imagenet-val": dict(weights.meta.get("_metrics", {}).get("ImageNet-1K", {}))},
        license="BSD-3-Clause (torchvision); see its model documentation",
        homepage="https://pytorch.org/vision/stable/models.html",
        download_mb=weights.meta.get("_file_size"),
    )

