"""Top-1 / top-5 accuracy and the confusion matrix of a classifier on a labelled folder.

Conventions: the model takes float RGB in [0, 1] (N, 3, H, W) and returns logits
(N, classes); accuracies are percentages of the images scored. Under DDP each rank
scores every world-size-th image and the counts are summed over ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from pconv_cli.data.classification import collate_labelled

__all__ = ["ClassificationResult", "evaluate_classifier"]


@dataclass
class ClassificationResult:
    """Counts of one evaluation; ``confusion[true, predicted]``."""

    classes: list[str]
    count: int
    top1_correct: int
    top5_correct: int
    confusion: Tensor

    @property
    def top1(self) -> float:
        return 100.0 * self.top1_correct / max(self.count, 1)

    @property
    def top5(self) -> float:
        return 100.0 * self.top5_correct / max(self.count, 1)

    def to_json(self) -> dict:
        return {
            "images": self.count,
            "top1": self.top1,
            "top5": self.top5,
            "classes": self.classes,
            "confusion": self.confusion.tolist(),
        }


def evaluate_classifier(
    model: nn.Module,
    dataset: Dataset,
    classes: Sequence[str],
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> ClassificationResult:
    """Score ``model`` (put in eval mode, restored afterwards) on every item of ``dataset``."""
    device = torch.device(device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    shard = Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(
        shard, batch_size=batch_size, num_workers=workers, collate_fn=collate_labelled
    )
    k = len(classes)
    counts = torch.zeros(3, dtype=torch.long, device=device)  # images, top-1, top-5
    confusion = torch.zeros(k, k, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                labels = batch["label"].to(device)
                logits = model(batch["image"].to(device)).float()
                ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
                hits = ranked == labels[:, None]
                counts += torch.stack(
                    [labels.new_tensor(len(labels)), hits[:, 0].sum(), hits.any(1).sum()]
                )
                confusion.index_put_(
                    (labels, ranked[:, 0]), torch.ones_like(labels), accumulate=True
                )
                if on_progress is not None:
                    on_progress(len(labels))
    finally:
        model.train(was_training)
    if world > 1:
        dist.all_reduce(counts)
        dist.all_reduce(confusion)
    images, top1, top5 = counts.tolist()
    return ClassificationResult(list(classes), images, top1, top5, confusion.cpu())
