import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch RNG state (when torch is loaded)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)
    yield


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cuda: needs a CUDA GPU (skipped without one; bench/gpu_check.py runs them)"
    )


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests are skipped on machines without a CUDA GPU."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in marked:
        item.add_marker(skip)
