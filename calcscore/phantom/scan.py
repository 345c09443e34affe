"""One synthetic scan (or several reconstructions of one subject) with voxel-exact labels."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from calcscore.labels import CALCIUM_LABELS, Label
from calcscore.phantom._draw import GridSpec
from calcscore.phantom.acquisition import (
    HU_MAX,
    HU_MIN,
    KERNELS,
    Acquisition,
    ScannerProfile,
    check_kernel,
    draw_acquisition,
    reconstruct,
    slice_profile,
)
from calcscore.phantom.anatomy import (
    Geometry,
    Subject,
    build_geometry,
    check_anatomy,
    draw_subject,
    render_anatomy,
)
from calcscore.phantom.artifacts import add_shoulder_streaks
from calcscore.phantom.calcification import Burden, Lesion, draw_burden, draw_lesions
from calcscore.phantom.inserts import InsertObject, apply_insert_object, draw_insert_object
from calcscore.phantom.objects import (
    add_metal_streaks,
    label_objects,
    outside_fov,
    render_objects,
)
from calcscore.volume import CTMeta, CTVolume, LabelVolume

log = logging.getLogger(__name__)

#: the anatomy of :func:`make_scan` when none is named (calcscore.phantom.anatomy.ANATOMIES)
DEFAULT_ANATOMY = "v2"


@dataclass
class ScanInfo:
    """What is known about a synthetic scan: the subject, its curves, its calcium and acquisition.

    The public points (``centrelines``, ``homogeneous_roi``, ``valves``) are patient LPS
    millimetres in numpy order (z, y, x), the frame of ``CTVolume.index_to_physical``. The
    drawing internals (``geometry``, ``lesions``) keep (x, y, z).
    """

    kernel: str
    kernel_name: str
    scanner: str
    manufacturer: str
    model: str
    kvp: float
    slice_thickness_mm: float
    slice_spacing_mm: float
    pixel_spacing_mm: float
    noise_sd_hu: float
    subject: Subject
    burden: Burden
    geometry: Geometry
    lesions: list[Lesion]
    calcium_volume_mm3: dict[str, float] = field(default_factory=dict)
    #: the calcium-insert test object in place of the heart (``insert_object=True``), else None
    insert_object: InsertObject | None = None

    @property
    def centrelines(self) -> dict[str, np.ndarray]:
        """(N, 3) curves, (z, y, x) mm, 1 mm apart: "LAD" (from the left main), "LCX", "RCA",
        "aorta" (from the aortic valve)."""
        c = dict(self.geometry.coronaries)
        c["aorta"] = self.geometry.aorta
        return {k: np.ascontiguousarray(v[:, ::-1]) for k, v in c.items()}

    @property
    def aorta_radius_mm(self) -> np.ndarray:
        """Lumen radius (mm) at each point of ``centrelines["aorta"]``."""
        return self.geometry.aorta_radius

    @property
    def valves(self) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
        """ "AV" and "MV": annulus centre (z, y, x mm), unit normal (z, y, x) and radius (mm)."""
        g = self.geometry
        return {
            "AV": (g.av_center[::-1].copy(), g.av_normal[::-1].copy(), g.av_radius),
            "MV": (g.mv_center[::-1].copy(), g.mv_normal[::-1].copy(), g.mv_radius),
        }

    @property
    def homogeneous_roi(self) -> tuple[np.ndarray, float]:
        """Centre (z, y, x mm) and radius (mm) of a sphere of blood in the heart, for noise SD."""
        c, r = self.geometry.homogeneous_roi
        return c[::-1].copy(), r

    @property
    def confounders(self) -> list[str]:
        return sorted({les.kind for les in self.lesions if les.label == 0})

    def summary(self) -> dict:
        """A flat dict of scalars (for a manifest row)."""
        return {
            "kernel_name": self.kernel_name,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "kvp": self.kvp,
            "slice_thickness_mm": self.slice_thickness_mm,
            "slice_spacing_mm": self.slice_spacing_mm,
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "noise_sd_hu": round(self.noise_sd_hu, 1),
            "age": round(self.subject.age, 1),
            "cac_category_target": self.burden.cac_category,
            "motion_mm": round(self.burden.motion_mm, 2),
            **{f"volume_{k}_mm3": round(v, 2) for k, v in self.calcium_volume_mm3.items()},
            "confounders": ";".join(self.confounders),
        }


@dataclass
class _Case:
    subject: Subject
    burden: Burden
    geometry: Geometry
    lesions: list[Lesion]
    acquisition: Acquisition
    noise_seed: int
    streak_seed: int
    insert_object: InsertObject | None = None


def _draw_case(
    rng,
    *,
    scanner,
    size,
    shape,
    spacing_mm,
    slice_thickness_mm,
    cac_category,
    anatomy="v1",
    slice_spacing_mm=None,
    insert_object=False,
) -> _Case:
    rng = np.random.default_rng(rng)
    seeds = [int(v) for v in rng.integers(0, 2**63 - 1, size=6)]
    subject = draw_subject(seeds[0])
    burden = draw_burden(seeds[1], age=subject.age, cac_category=cac_category)
    if size == "gated":  # ECG gating: a fraction of the non-gated scan's cardiac motion
        burden = dataclasses.replace(burden, motion_mm=0.25 * burden.motion_mm)
    geo = build_geometry(subject, anatomy)
    lesions = draw_lesions(geo, burden, seeds[2])
    acq = draw_acquisition(
        seeds[3],
        geo,
        scanner=scanner,
        size=size,
        shape=shape,
        spacing_mm=spacing_mm,
        slice_thickness_mm=slice_thickness_mm,
        slice_spacing_mm=slice_spacing_mm,
    )
    io = None
    if insert_object:  # its own stream: the other draws stay those of the same seed without it
        if geo.habitus is None:
            raise ValueError("`insert_object` needs the realistic anatomy (anatomy='v2')")
        io = draw_insert_object(np.random.default_rng([seeds[2], 26]), geo.heart_center)
    return _Case(subject, burden, geo, lesions, acq, seeds[4], seeds[5], io)


def _background_lookup(obj: np.ndarray, grid: GridSpec):
    def lookup(p_xyz) -> float:
        idx = [
            int(
                np.clip(
                    round((p_xyz[2 - a] - grid.origin_mm[a]) / grid.spacing_mm[a]),
                    0,
                    grid.shape[a] - 1,
                )
            )
            for a in range(3)
        ]
        return float(obj[tuple(idx)])

    return lookup


def make_scans(
    *,
    rng,
    kernels=KERNELS,
    scanner: str | ScannerProfile | None = None,
    size: str = "full",
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    slice_thickness_mm: float | None = None,
    cac_category: int | None = None,
    patient_id: str | None = None,
    anatomy: str = DEFAULT_ANATOMY,
    slice_spacing_mm: float | None = None,
    insert_object: bool = False,
) -> dict[str, tuple[CTVolume, LabelVolume, ScanInfo]]:
    """Reconstructions of one subject with several kernels, sharing anatomy, lesions and noise.

    Same ``rng`` seed, same subject and same bytes; ``make_scans(rng=s)["sharp"]`` equals
    ``make_scan(rng=s, kernel="sharp")``. See :func:`make_scan` for the options.

    Args:
        rng: seed or numpy Generator: the same seed gives the same subject.
        kernels: "soft", "sharp" or a sequence of them.
        scanner, size, shape, spacing_mm, slice_thickness_mm, cac_category, patient_id, anatomy,
            slice_spacing_mm, insert_object: as :func:`make_scan`.

    Returns:
        ``{kernel: (volume, labels, info)}``, each as :func:`make_scan` returns it.
    """
    kernels = tuple(check_kernel(k) for k in ([kernels] if isinstance(kernels, str) else kernels))
    case = _draw_case(
        rng,
        scanner=scanner,
        size=size,
        shape=shape,
        spacing_mm=spacing_mm,
        slice_thickness_mm=slice_thickness_mm,
        cac_category=cac_category,
        anatomy=check_anatomy(anatomy),
        slice_spacing_mm=slice_spacing_mm,
        insert_object=insert_object,
    )
    acq = case.acquisition
    obj = render_anatomy(case.geometry, acq.work_grid)
    if case.insert_object is not None:
        case.lesions, case.insert_object = apply_insert_object(
            obj, acq.work_grid, case.insert_object, case.lesions
        )
    slice_profile(obj, acq.work_grid, acq.slice_thickness_mm)
    z = acq.grid.axis_mm(0)
    noise_z = 1.0 + 0.25 * np.clip((z - (case.subject.z_av_mm + 90)) / 60.0, 0, 1)
    background = _background_lookup(obj, acq.work_grid)
    out = {}
    for kernel in kernels:
        hu = reconstruct(obj, acq, kernel, case.noise_seed, noise_z)
        add_shoulder_streaks(
            hu, acq.grid, case.geometry, acq.noise_sd_soft_hu, kernel, [case.streak_seed, 2]
        )
        rendered = render_objects(hu, acq, kernel, case.lesions, background)
        add_metal_streaks(hu, acq.grid, rendered, kernel, case.streak_seed)
        np.clip(hu, HU_MIN, HU_MAX, out=hu)
        np.rint(hu, out=hu)
        labels = np.zeros(hu.shape, np.uint8)
        label_objects(hu, labels, rendered)
        if acq.scanner.outside_fov_hu is not None and size == "full" and shape is None:
            outside_fov(hu, acq.grid, acq.scanner.outside_fov_hu)
        elif size == "gated" and shape is None:  # the heart-only reconstruction circle
            outside_fov(hu, acq.grid, acq.scanner.outside_fov_hu or HU_MIN)
        out[kernel] = _package(case, kernel, hu, labels, patient_id)
    return out


def _package(case: _Case, kernel: str, hu: np.ndarray, labels: np.ndarray, patient_id):
    acq = case.acquisition
    grid = acq.grid
    kernel_name = acq.scanner.kernel_name(kernel)
    meta = CTMeta(
        slice_thickness_mm=acq.slice_thickness_mm,
        kernel=kernel_name,
        manufacturer=acq.scanner.manufacturer,
        model=acq.scanner.model,
        kvp=acq.kvp,
        series_uid=acq.series_uid(kernel),
        study_uid=acq.study_uid,
        patient_id=patient_id,
        extra={
            "synthetic": True,
            "kernel_class": kernel,
            "scanner": acq.scanner.key,
            "exposure_mas": acq.mas,
            "slice_spacing_mm": grid.spacing_mm[0],
            "noise_sd_hu": acq.noise_sd(kernel),
        },
    )
    volume = CTVolume(hu, grid.spacing_mm, grid.origin_mm, np.eye(3), meta=meta)
    lv = LabelVolume(labels, grid.spacing_mm, grid.origin_mm, np.eye(3))
    counts = np.bincount(labels[labels > 0], minlength=len(Label))
    vox = float(np.prod(grid.spacing_mm))
    info = ScanInfo(
        kernel=kernel,
        kernel_name=kernel_name,
        scanner=acq.scanner.key,
        manufacturer=acq.scanner.manufacturer,
        model=acq.scanner.model,
        kvp=acq.kvp,
        slice_thickness_mm=acq.slice_thickness_mm,
        slice_spacing_mm=grid.spacing_mm[0],
        pixel_spacing_mm=grid.spacing_mm[1],
        noise_sd_hu=acq.noise_sd(kernel),
        subject=case.subject,
        burden=case.burden,
        geometry=case.geometry,
        lesions=case.lesions,
        calcium_volume_mm3={lab.name: float(counts[lab] * vox) for lab in CALCIUM_LABELS},
        insert_object=case.insert_object,
    )
    return volume, lv, info


def make_scan(
    *,
    rng,
    kernel: str = "soft",
    scanner: str | ScannerProfile | None = None,
    size: str = "full",
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    slice_thickness_mm: float | None = None,
    cac_category: int | None = None,
    patient_id: str | None = None,
    anatomy: str = DEFAULT_ANATOMY,
    slice_spacing_mm: float | None = None,
    insert_object: bool = False,
) -> tuple[CTVolume, LabelVolume, ScanInfo]:
    """A synthetic non-contrast low-dose chest CT with voxel-level calcium labels.

    Args:
        rng: seed or numpy Generator. The same seed gives the same subject for every kernel.
        kernel: "soft" (smooth, noise SD 20-40 HU) or "sharp" (edge-enhanced, SD 60-150 HU).
        scanner: a key of :data:`calcscore.phantom.SCANNERS` (or a profile); drawn when None.
        size: "full" (512 x 512, whole chest, ~120-380 slices by the scanner's slice spacing),
            "medium" (100 x 256 x 256 at 0.8 mm around the heart), "small" (60 x 128 x 128 at
            1.3 mm and 2.5 mm slices, around the heart and aorta: fast, for tests and CPU
            training) or "gated" (56 x 512 x 512 at 0.4 mm, 3 mm slices: an ECG-gated
            calcium-scoring scan of the heart only, a quarter of the cardiac motion, the body cut
            by the field of view).
        slice_spacing_mm: slices this far apart over the same range (with
            ``slice_thickness_mm``: 5 mm contiguous slices are ``slice_thickness_mm=5,
            slice_spacing_mm=5``).
        shape, spacing_mm, slice_thickness_mm: override the grid (z, y, x); in-plane sizes even.
        cac_category: force the subject's coronary calcium risk category (1-4).
        patient_id: the patient ID of the volume's metadata; None: none.
        anatomy: "v2" (default) the realistic anatomy: body outline along z, shoulder girdle and
            arms, ribs with cortex and marrow at their obliquity, costal cartilage, sternum,
            vertebrae with posterior elements, upper abdomen, neck, breasts, a four-chamber
            heart with the coronary arteries in its grooves, an aorta of real curvature
            (docs/phantoms.md);
            "v1" the first generator's cartoon anatomy, byte for byte (the shipped model was
            trained on it).
        insert_object: put a calcium-insert test object in place of the heart
            (:mod:`calcscore.phantom.inserts`: a water-equivalent cylinder holding 1-5.5 mm
            calcium inserts labelled LAD); the realistic anatomy only. The subject, its other
            lesions and the acquisition are those of the same seed without it.

    Returns:
        ``(volume, labels, info)``: HU as whole numbers in [-1024, 3071] (or the scanner's
        outside-field-of-view value), labels with :class:`calcscore.labels.Label` values, and a
        :class:`ScanInfo`.
    """
    return make_scans(
        rng=rng,
        kernels=(kernel,),
        scanner=scanner,
        size=size,
        shape=shape,
        spacing_mm=spacing_mm,
        slice_thickness_mm=slice_thickness_mm,
        cac_category=cac_category,
        patient_id=patient_id,
        anatomy=anatomy,
        slice_spacing_mm=slice_spacing_mm,
        insert_object=insert_object,
    )[kernel]
