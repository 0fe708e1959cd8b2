"""Random-but-fixed network files in the reference layouts, and the reference networks.

- ``alexnet.pth``: a torchvision AlexNet state dict (seeded init);
- ``lpips-lin.pth``: the ``lpips`` package's own v0.1 AlexNet heads (shipped with it);
- ``pt_inception.pth``: torchvision's Inception3 (1008 classes, no aux head) with seeded
  weights whose BatchNorm statistics were measured on random images, so activations stay
  O(1) through the 90-odd layers (pytorch-fid's ``pt_inception-2015-12-05`` key layout).

The reference networks are the packages' own classes: ``lpips.LPIPS(net='alex')`` and
``pytorch_fid.inception.InceptionV3([3])``, given these files.
"""

from __future__ import annotations

from pathlib import Path

import torch


def lpips_heads_file() -> Path:
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "alex.pth"


def make_alexnet(path: Path) -> Path:
    from torchvision.models import alexnet

    torch.manual_seed(11)
    torch.save(alexnet(weights=None).state_dict(), path)
    return path


def make_inception(path: Path) -> Path:
    from torchvision.models import inception_v3

    torch.manual_seed(12)
    net = inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=True)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    net.train()
    generator = torch.Generator().manual_seed(13)
    with torch.no_grad():
        net(torch.rand(4, 3, 299, 299, generator=generator) * 2 - 1)
    torch.save(net.state_dict(), path)
    return path


def reference_lpips(alexnet_file: Path):
    """``lpips.LPIPS(net='alex')`` (v0.1, its heads) with the AlexNet trunk of ``alexnet_file``."""
    import lpips

    model = lpips.LPIPS(
        net="alex", pnet_rand=True, model_path=str(lpips_heads_file()), verbose=False
    )
    trunk = torch.load(alexnet_file, map_location="cpu")
    slices = [model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4]
    slices.append(model.net.slice5)
    for block in slices:
        for name, layer in block.named_children():
            for param in ("weight", "bias"):
                key = f"features.{name}.{param}"
                if key in trunk:
                    getattr(layer, param).data.copy_(trunk[key])
    return model.eval()


def reference_inception(inception_file: Path, monkeypatch):
    """pytorch-fid's ``InceptionV3([3])`` whose weight download returns ``inception_file``."""
    import pytorch_fid.inception as fid_inception

    monkeypatch.setattr(
        fid_inception,
        "load_state_dict_from_url",
        lambda *args, **kwargs: torch.load(inception_file, map_location="cpu"),
    )
    return fid_inception.InceptionV3([3]).eval()
