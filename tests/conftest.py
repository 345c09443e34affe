"""Shared fixtures: tiny volumes with known geometry, built on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from calcscore.volume import CTMeta, CTVolume, LabelVolume

QRM_DICOM = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "qrm-canon-large-rep1"
    / "dicom"
)


def pytest_configure(config) -> None:
    """Under pytest-xdist (``-n auto``) the workers share the cores: one torch thread pool each
    of ``cores / workers`` threads instead of every worker taking every core."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def oblique_direction() -> np.ndarray:
    """A proper rotation (columns = array axes z, y, x in LPS), not the identity."""
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    # ITK-style (x, y, z) rows and columns -> ours (z, y, x)
    return rot[::-1, ::-1].copy()


@pytest.fixture
def small_ct() -> CTVolume:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 1500, size=(6, 9, 11)).astype(np.float32)
    meta = CTMeta(
        slice_thickness_mm=2.0,
        kernel="B30f",
        manufacturer="SIEMENS",
        model="Sensation 64",
        kvp=120.0,
        series_uid="1.2.3.4.5",
    )
    return CTVolume(hu, (1.5, 0.7, 0.6), (-20.0, 10.5, -33.25), oblique_direction(), meta=meta)


@pytest.fixture
def small_labels(small_ct) -> LabelVolume:
    rng = np.random.default_rng(1)
    return LabelVolume.like(small_ct, rng.integers(0, 7, size=small_ct.shape).astype(np.uint8))


@pytest.fixture
def qrm_dicom() -> Path:
    if not QRM_DICOM.is_dir():
        pytest.skip(f"real QRM scan not found at {QRM_DICOM}")
    return QRM_DICOM


@pytest.fixture(scope="session")
def hybrid_heart_cut() -> tuple[CTVolume, np.ndarray]:
    """The real chest CT that ships with calcscore (lungdx-a0001-b, 5 mm) with 12 synthetic
    coronary lesions in its epicardial fat (seed [2026, 0, 0]), cut to a 200 mm heart-only field
    of view: (the cut, its lesions' reference map)."""
    import json

    from calcscore.datasets import examples
    from calcscore.realism.hybrid import heart_only_cut, hybrid_scan

    hearts = Path(__file__).resolve().parents[1] / "data" / "real_negatives" / "hearts.json"
    heart = json.loads(hearts.read_text())["lungdx-a0001-b"]
    scan, ref, _, lesions = hybrid_scan(
        examples.chest_ct(), heart, 12, np.random.default_rng([2026, 0, 0])
    )
    return heart_only_cut(scan, ref, lesions, heart)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A small random model bundle (cnn1.pt, cnn2.pt) that calls few voxels calcium: fast
    `calcscore score` runs."""
    import torch

    from calcscore.networks import build_network
    from calcscore.training import get_config, save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    c1 = get_config("workshop", "cnn1", width=4, head_width=8)
    c2 = get_config("workshop", "cnn2", width_scale=0.25, dense_width=8)
    cnn1 = build_network("cnn1", c1.network_params())
    with torch.no_grad():  # a random model that calls few voxels calcium keeps the test fast
        cnn1.head_layers[-1].bias[0] = 4.0
        for sub in cnn1.subnets:
            sub.aux_classifier[-1].bias[0] = 4.0
    save_model(cnn1, c1, folder / "cnn1.pt")
    save_model(build_network("cnn2", c2.network_params()), c2, folder / "cnn2.pt")
    return folder


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (faster and steadier on a small, busy machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def fresh_clone(tmp_path_factory) -> Path:
    """The repository's files as a fresh clone has them (tracked, plus new files git does not
    ignore), copied to a temporary folder with no ``shared`` folder beside it."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell which files a fresh clone has")
    clone = tmp_path_factory.mktemp("fresh") / "calcscore"
    for rel in sorted({p for p in listed.decode().split("\0") if p}):
        src = root / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel, follow_symlinks=False)
    assert not (clone.parent / "shared").exists()
    return clone
