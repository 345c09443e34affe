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
from calcscore.phantom.scan import DEFAULT_ANATOMY, ScanInfo, make_scans
from calcscore.volume import CTVolume, LabelVolume

log = logging.getLogger(__name__)

#: The version of the phantom generator: change it whenever a change to :mod:`calcscore.phantom`
#: changes the scans of a (seed, participant). A build recipe names it (``[phantoms] generator``)
#: and the build's cache keys every stage with it (:mod:`calcscore.pipeline`), so phantoms,
#: networks and figures of an older generator are never mixed with new ones. "2026-11-28": the
#: descending aorta kept in front of the vertebral bodies (commit 0c36f93). "2026-12-05": the
#: realistic anatomy ("v2": shoulder girdle and arms, ribs, costal cartilage, sternum, vertebrae
#: with posterior elements, upper abdomen, neck, breasts) is the default; "v1" keeps the old one.
#: "2026-12-05.2": v2's own four-chamber heart in epicardial fat with the coronary arteries in its
#: grooves, and an aorta of real curvature (:mod:`calcscore.phantom.heart`); v1 unchanged.
#: "2026-12-05.3": v2's chest deeper in front, the descending aorta beside the vertebral bodies and
#: the heart fitted round it (flattened and widened, seldom shrunk), the oesophagus off the aorta;
#: v1 unchanged. "2026-12-05.4": v2's diaphragm slopes down to the back (the lungs' posterior
#: recesses reach lowest, beside the spine and the descending aorta); v1 unchanged.
GENERATOR_VERSION = "2026-12-05.4"


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
        return {
            "scan_id": self.scan_id,
            "participant_id": self.participant_id,
            "kernel": self.kernel,
            "scanner": self.info.scanner,
            **self.info.summary(),
        }


def participant_id(index: int, *, prefix: str = "P") -> str:
    return f"{prefix}{index:04d}"


def make_cohort(
    n: int,
    *,
    seed: int,
    kernels=KERNELS,
    size: str = "full",
    scanner: str | ScannerProfile | None = None,
    observers: int = 0,
    observer_profile: ObserverProfile | None = None,
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    start: int = 0,
    id_prefix: str = "P",
    anatomy: str = DEFAULT_ANATOMY,
    insert_fraction: float = 0.0,
    slice_mm: float | None = None,
) -> Iterator[CohortScan]:
    """Yield the scans of participants ``start .. start + n - 1``, kernel by kernel.

    Participant ``i`` depends only on ``(seed, i)``: a cohort can be generated in parts
    (``start``) or in parallel, and grows without changing earlier participants.
    ``observers`` (0, 1 or 2) adds "observer2" and "observer3" label maps from :func:`observe`.
    ``anatomy`` "v2" (realistic) or "v1" (the first generator's), as :func:`make_scan`.

    Args:
        n: the number of participants (>= 0).
        seed: the cohort's seed.
        kernels: "soft", "sharp" or a sequence of them: one scan per kernel and participant.
        size: the field of view, as :func:`make_scan` (``"full"``, ``"medium"``, ``"small"``,
            ``"gated"``).
        scanner: a key of :data:`calcscore.phantom.SCANNERS` or a profile; None: drawn per
            participant.
        observers: how many other observers' label maps to add (0, 1 or 2).
        observer_profile: their disagreement rates; None: :class:`ObserverProfile` defaults.
        shape, spacing_mm: override the grid (z, y, x), as :func:`make_scan`.
        start: the index of the first participant.
        id_prefix: the participant id's prefix ("P0007").
        anatomy: "v2" or "v1".
        insert_fraction: the share of participants (drawn per participant from ``(seed, i)``)
            whose heart is replaced by a calcium-insert test object (:func:`make_scan`'s
            ``insert_object``; anatomy "v2" only). 0: none, and the cohort is unchanged.
        slice_mm: contiguous slices this thick and this far apart (e.g. 5.0: a 5 mm
            whole-chest reconstruction of the same subjects); None: the scanner's.

    Yields:
        a :class:`CohortScan` per participant and kernel, participant by participant.
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0, got {n=}")
    if not 0.0 <= insert_fraction <= 1.0:
        raise ValueError(f"`insert_fraction` must lie in [0, 1], got {insert_fraction=}")
    if observers not in (0, 1, 2):
        raise ValueError(f"`observers` must be 0, 1 or 2, got {observers=}")
    kernels = tuple(check_kernel(k) for k in ([kernels] if isinstance(kernels, str) else kernels))
    for i in range(start, start + n):
        pid = participant_id(i, prefix=id_prefix)
        scans = make_scans(
            rng=np.random.default_rng([seed, i]),
            kernels=kernels,
            scanner=scanner,
            size=size,
            shape=shape,
            spacing_mm=spacing_mm,
            patient_id=pid,
            anatomy=anatomy,
            slice_thickness_mm=slice_mm,
            slice_spacing_mm=slice_mm,
            insert_object=bool(
                insert_fraction > 0
                and np.random.default_rng([seed, i, 26]).random() < insert_fraction
            ),
        )
        for kernel in kernels:
            vol, lab, info = scans[kernel]
            obs = {}
            for j in range(observers):
                obs[f"observer{j + 2}"] = observe(
                    lab,
                    vol,
                    rng=np.random.default_rng([seed, i, KERNELS.index(kernel), j + 2]),
                    profile=observer_profile,
                    info=info,
                )
            yield CohortScan(f"{pid}_{kernel}", pid, kernel, vol, lab, info, obs)


FORMATS = ("nii.gz", "mha")


def write_cohort(
    out_dir,
    *,
    n_scans: int,
    seed: int,
    kernels=KERNELS,
    observers: bool = False,
    fmt: str = "nii.gz",
    size: str = "full",
    scanner: str | ScannerProfile | None = None,
    progress: bool = True,
    anatomy: str = DEFAULT_ANATOMY,
):
    """Write ``n_scans`` scans with label maps and ``out_dir/manifest.csv``; return its path.

    Participants get one scan per kernel (soft and sharp by default), so ``n_scans`` scans come
    from ``ceil(n_scans / len(kernels))`` participants. Layout: ``images/<scan_id>.<fmt>``,
    ``labels/<scan_id>.<fmt>`` and, with ``observers``, ``labels_observer2/`` and
    ``labels_observer3/``. Manifest columns: ``scan_id, participant_id, image, labels, kernel,
    scanner`` (paths relative to ``out_dir``), the observers' ``labels_observer2,
    labels_observer3``, then acquisition and subject facts (kernel name, kVp, slice thickness,
    target risk category, calcium volumes per label). Needs SimpleITK (``calcscore[io]``).

    Args:
        out_dir: the output folder (created; must not be a file).
        n_scans: the number of scans (>= 1).
        seed: the cohort's seed (:func:`make_cohort`).
        kernels: "soft", "sharp" or a sequence of them.
        observers: also write the label maps of two other observers.
        fmt: the image format, one of :data:`FORMATS`.
        size: the field of view, as :func:`make_scan`.
        scanner: a key of :data:`calcscore.phantom.SCANNERS` or a profile; None: drawn.
        progress: show a progress bar.
        anatomy: "v2" or "v1", as :func:`make_scan`.

    Returns:
        the path of ``out_dir/manifest.csv``.
    """
    from pathlib import Path

    import pandas as pd
    from tqdm import tqdm

    from calcscore.errors import InputError
    from calcscore.io import write_labels, write_volume
    from calcscore.manifest import write_manifest

    if n_scans < 1:
        raise ValueError(f"`n_scans` must be >= 1, got {n_scans=}")
    if fmt not in FORMATS:
        raise ValueError(f"`fmt` must be one of {', '.join(FORMATS)}, got {fmt=}")
    kernels = tuple(check_kernel(k) for k in ([kernels] if isinstance(kernels, str) else kernels))
    if not kernels:
        raise ValueError("`kernels` must name at least one kernel (soft, sharp)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder", "choose another output folder")
    folders = {"image": out / "images", "labels": out / "labels"}
    if observers:
        folders.update({f"labels_observer{j}": out / f"labels_observer{j}" for j in (2, 3)})
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    n_participants = -(-n_scans // len(kernels))
    rows: list[dict[str, object]] = []
    scans = make_cohort(
        n_participants,
        seed=seed,
        kernels=kernels,
        size=size,
        scanner=scanner,
        observers=2 if observers else 0,
        anatomy=anatomy,
    )
    with tqdm(total=n_scans, unit="scan", desc="synth", disable=not progress) as bar:
        for cs in scans:
            if len(rows) == n_scans:
                break
            name = f"{cs.scan_id}.{fmt}"
            row = {
                "scan_id": cs.scan_id,
                "participant_id": cs.participant_id,
                "image": write_volume(cs.volume, folders["image"] / name),
                "labels": write_labels(cs.labels, folders["labels"] / name),
                "kernel": cs.kernel,
                "scanner": cs.info.scanner,
            }
            for key, lv in cs.observers.items():
                row[f"labels_{key}"] = write_labels(lv, folders[f"labels_{key}"] / name)
            row.update(cs.info.summary())
            rows.append(row)
            bar.update(1)
    path = write_manifest(pd.DataFrame(rows), out / "manifest.csv")
    log.info("wrote %d scans of %d participants to %s", len(rows), n_participants, out)
    return path
