"""Torchvision classifiers with zero padding (``resnet50``) or partial-convolution padding
(``pd_resnet50``): one family per torchvision classification model, made on demand.

``build_model("pd_resnet50", num_classes=10, weights="IMAGENET1K_V1")`` builds
torchvision's resnet50, loads the given weights (a torchvision weights name, through
torchvision's weights API and the torch.hub cache; or a local state-dict file), puts
a fresh ``num_classes`` head on it if the weights had another number of classes, and
converts every zero-padded convolution to partial padding
(:func:`~pconv_cli.nn.padding.convert_to_partial_padding`): NVIDIA's recommended
start, zero-padding ImageNet weights fine-tuned with partial padding. The state-dict
keys stay torchvision's.

The model (:class:`Classifier`) takes float RGB images in [0, 1], (N, 3, H, W), and
returns logits (N, num_classes); it normalises with ImageNet's mean and std.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from pconv_cli.models.registry import (
    ModelError,
    ModelFamily,
    get_family,
    register_model,
    register_resolver,
)
from pconv_cli.nn.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from pconv_cli.nn.padding import convert_to_partial_padding

__all__ = ["PREFIX", "Classifier", "ClassifierConfig", "classifier_names"]

PREFIX = "pd_"
"""Family-name prefix of the partial-padding variants."""


@functools.cache
def _torchvision_classifiers() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def classifier_names() -> list[str]:
    """Every classifier family name: torchvision's models, then their ``pd_`` variants."""
    names = list(_torchvision_classifiers())
    return names + [PREFIX + name for name in names]


@dataclass(frozen=True)
class ClassifierConfig:
    """``arch``: torchvision's model name; ``partial_padding``; ``num_classes`` of the head."""

    arch: str
    partial_padding: bool = False
    num_classes: int = 1000

    def __post_init__(self) -> None:
        if self.arch not in _torchvision_classifiers():
            raise ValueError(f"{self.arch!r} is not a torchvision classification model")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(f"num_classes must be an integer, got {self.num_classes!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")


class Classifier(nn.Module):
    """A torchvision classifier taking RGB in [0, 1]; ``net`` holds torchvision's keys."""

    def __init__(self, net: nn.Module, *, family: str, config: ClassifierConfig):
        super().__init__()
        self.net = net
        self.family = family
        self.config = config
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, image: Tensor) -> Tensor:
        return self.net(self.normalize(image))


def _last_linear(net: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent, attribute name, layer) of the net's last ``nn.Linear``: its head."""
    found = None
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None:
        raise ModelError(f"{type(net).__name__} has no linear head to resize")
    return found


def _weights_state(arch: str, spec: str) -> dict[str, Tensor]:
    """The tensors ``weights=spec`` names: a local state-dict file, or a torchvision weights
    name of ``arch`` (``IMAGENET1K_V1``), which is the zoo entry ``<arch>.<name>`` fetched
    into the hub cache with its hash checked, like every other published weights."""
    from pconv_cli.weights.formats import read_state_file
    from pconv_cli.weights.hub import fetch_weights
    from pconv_cli.weights.zoo import get_weights

    path = Path(spec).expanduser()
    if path.is_file():
        return read_state_file(path)
    if path.suffix or len(path.parts) > 1:
        raise ModelError(f"weights file not found: {path}")
    return read_state_file(fetch_weights(get_weights(f"{arch}.{spec}")))


def _build(
    config: ClassifierConfig, *, weights: str | os.PathLike[str] | None = None
) -> Classifier:
    import torchvision

    family = (PREFIX if config.partial_padding else "") + config.arch
    net = torchvision.models.get_model(config.arch, weights=None, num_classes=config.num_classes)
    if weights is not None and str(weights).lower() != "none":
        state = _weights_state(config.arch, str(weights))
        parent, name, head = _last_linear(net)
        head_rows = state.get(f"{_path_of(net, head)}.weight")
        if head_rows is not None and head_rows.shape[0] != config.num_classes:
            # other classes than ours: load everything else, keep a fresh head
            setattr(
                parent,
                name,
                nn.Linear(head.in_features, head_rows.shape[0], bias=head.bias is not None),
            )
            _load(net, state, str(weights))
            setattr(parent, name, head)
        else:
            _load(net, state, str(weights))
    if config.partial_padding:
        convert_to_partial_padding(net)
    return Classifier(net, family=family, config=config)


def _path_of(net: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in net.named_modules() if m is module)


def _load(net: nn.Module, state: dict[str, Tensor], source: str) -> None:
    from pconv_cli.weights.checkpoint import check_state_dict

    check_state_dict(net, state, source)
    net.load_state_dict(state)


def _resolve(name: str) -> ModelFamily | None:
    partial = name.startswith(PREFIX)
    arch = name.removeprefix(PREFIX)
    if arch not in _torchvision_classifiers():
        return None
    register_model(
        name,
        config=ClassifierConfig,
        task="classification",
        kind="classification",
        defaults={"arch": arch, "partial_padding": partial},
        build_options=("weights",),
        description=f"torchvision {arch}"
        + (" with partial-convolution padding" if partial else ""),
    )(_build)
    return get_family(name)


register_resolver(
    _resolve, classifier_names, "a torchvision classifier (prefix pd_ for partial padding)"
)
