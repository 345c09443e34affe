"""Cohorts of synthetic participants, generated in memory (no files, no SimpleITK).

Each participant is one subject reconstructed with every requested kernel (soft and sharp, as
in the paper), optionally annotated by simulated observers 2 and 3.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from calcscore.phantom.acquisition import KERNELS, ScannerProfile, check_kernel
from calcscore.phantom.observers import ObserverProfile, observe
from calcscore.phantom.scan import ScanInfo, make_scans
from calcscore.volume import CTVolume, LabelVolume

log = logging.getLogger(__name__)


@dataclass
class CohortScan:
    """One reconstruction of one participant."""

    scan_id: str
    participant_id: str
    kernel: str
    volume: CTVolume
    labels: LabelVolume
    info: ScanInfo
    observers: dict[str, LabelVolume] = field(default_factory=dict)  # "observer2", "observer3"

    def row(self) -> dict:
        """Manifest-style scalars: ids, kernel, scanner and the info summary."""
        return {"scan_id": self.scan_id, "participant_id": self.participant_id,
                "kernel": self.kernel, "scanner": self.info.scanner, **self.info.summary()}


def participant_id(index: int, *, prefix: str = "P") -> str:
    return f"{prefix}{index:04d}"


def make_cohort(n: int, *, seed: int, kernels=KERNELS, size: str = "full",
                scanner: str | ScannerProfile | None = None, observers: int = 0,
                observer_profile: ObserverProfile | None = None,
                shape: tuple[int, int, int] | None = None,
                spacing_mm: tuple[float, float, float] | None = None,
                start: int = 0, id_prefix: str = "P") -> Iterator[CohortScan]:
    """Yield the scans of participants ``start .. start + n - 1``, kernel by kernel.

    Participant ``i`` depends only on ``(seed, i)``: a cohort can be generated in parts
    (``start``) or in parallel, and grows without changing earlier participants.
    ``observers`` (0, 1 or 2) adds "observer2" and "observer3" label maps from :func:`observe`.
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0, got {n=}")
    if observers not in (0, 1, 2):
        raise ValueError(f"`observers` must be 0, 1 or 2, got {observers=}")
    kernels = tuple(check_kernel(k) for k in ([kernels] if isinstance(kernels, str) else kernels))
    for i in range(start, start + n):
        pid = participant_id(i, prefix=id_prefix)
        scans = make_scans(rng=np.random.default_rng([seed, i]), kernels=kernels, scanner=scanner,
                           size=size, shape=shape, spacing_mm=spacing_mm, patient_id=pid)
        for kernel in kernels:
            vol, lab, info = scans[kernel]
            obs = {}
            for j in range(observers):
                obs[f"observer{j + 2}"] = observe(
                    lab, vol, rng=np.random.default_rng([seed, i, KERNELS.index(kernel), j + 2]),
                    profile=observer_profile, info=info)
            yield CohortScan(f"{pid}_{kernel}", pid, kernel, vol, lab, info, obs)
