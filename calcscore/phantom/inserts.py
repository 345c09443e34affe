"""A calcium-insert test object in place of the heart (issue 26): coronary-like calcium in a
homogeneous soft-tissue context.

Calcium phantoms (QRM's thorax phantom with its cardiac calcification insert, and its kind) put
small cylinders of hydroxyapatite in a water-equivalent cylinder surrounded by lung: no
epicardial fat, no vessels. The anatomy's phantoms never show that context (their bright blobs
in homogeneous soft tissue are bone), so a network trained on them calls the inserts background.
:func:`draw_insert_object` draws such an object for a subject of the realistic anatomy: a
cylinder along z at the heart (radius 35-50 mm, 50-90 mm long, 0-95 HU) holding 4-12 inserts
(diameters 1-5.5 mm, lengths 1-6 mm, peak 180-1,300 HU, axes along z as in the phantoms), placed
at random, not on any real phantom's grid. The inserts are labelled LAD: a calcium phantom's
inserts are scored as coronary calcium (Agatston CAC), and with no artery to name, LAD, the
artery that holds most coronary calcium, is the label CAC groups them under.

:func:`apply_insert_object` paints the cylinder into the anatomy (bone and cartilage kept) and
replaces the lesions inside it by the inserts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from calcscore.labels import Label
from calcscore.phantom._draw import GridSpec
from calcscore.phantom.calcification import Lesion

#: anatomy HU at or above this is bone or cartilage, which the cylinder does not overwrite
KEEP_HU = 180.0
#: anatomy HU below this is air outside the body, which the cylinder does not fill either
AIR_HU = -950.0
#: the label of every insert (see the module's docstring)
INSERT_LABEL = int(Label.LAD)


@dataclass(frozen=True)
class InsertObject:
    """A water-equivalent cylinder along z (x, y, z mm) with calcium inserts (label LAD)."""

    center_mm: tuple[float, float, float]
    radius_mm: float
    length_mm: float
    hu: float
    inserts: tuple[Lesion, ...]

    def contains(self, p_xyz, margin_mm: float = 0.0) -> bool:
        """Whether the point lies inside the cylinder grown by ``margin_mm``."""
        d = np.asarray(p_xyz, float) - np.asarray(self.center_mm)
        return bool(
            np.hypot(d[0], d[1]) <= self.radius_mm + margin_mm
            and abs(d[2]) <= self.length_mm / 2 + margin_mm
        )


def insert_volume_mm3(les: Lesion) -> float:
    """The volume of an insert drawn as a tube (a cylinder with hemispherical ends)."""
    r = les.axes_mm[0]
    ends = np.asarray(les.points if les.points is not None else [les.center_mm] * 2)
    length = float(np.linalg.norm(ends[-1] - ends[0]))
    return float(np.pi * r * r * length + 4.0 / 3.0 * np.pi * r**3)


def draw_insert_object(rng, heart_center_mm) -> InsertObject:
    """Draw a cylinder at the heart and its inserts (see the module's docstring).

    Args:
        rng: seed or numpy Generator.
        heart_center_mm: the subject's heart centre (x, y, z) mm: the cylinder's centre.

    Returns:
        the :class:`InsertObject`; its inserts do not overlap (centres >= 4 mm + radii apart)
        and lie at least 8 mm inside the cylinder's wall and ends.
    """
    rng = np.random.default_rng(rng)
    c = np.asarray(heart_center_mm, float) + rng.normal(0, 4, 3)
    radius, length = float(rng.uniform(35, 50)), float(rng.uniform(50, 90))
    hu = float(rng.uniform(0, 95))
    inserts: list[Lesion] = []
    centres: list[tuple[np.ndarray, float]] = []
    n = int(rng.integers(4, 13))
    for _ in range(200):
        if len(inserts) == n:
            break
        r = float(rng.uniform(0.5, 2.75))  # diameters 1-5.5 mm
        half = float(rng.uniform(0.5, 3.0)) - min(r, 1.5) / 2
        half = max(half, 0.0)  # the tube's length between its hemispherical ends
        rho, th = (radius - 8 - r) * np.sqrt(rng.uniform(0, 1)), rng.uniform(0, 2 * np.pi)
        p = c + np.array([rho * np.cos(th), rho * np.sin(th), rng.uniform(-1, 1)])
        p[2] += (length / 2 - 8 - half - r) * rng.uniform(-1, 1)
        if any(np.linalg.norm(p - q) < 4 + r + rq + half for q, rq in centres):
            continue
        centres.append((p, r + half))
        ends = np.array([p - [0, 0, half], p + [0, 0, half + 1e-3]])
        inserts.append(
            Lesion(
                INSERT_LABEL,
                "calcium_insert",
                tuple(p),
                (r, r, r),
                np.eye(3),
                float(rng.uniform(180, 1300)),
                points=ends,
            )
        )
    return InsertObject(tuple(c), radius, length, hu, tuple(inserts))


def _in_cylinder_tissue(obj: np.ndarray, grid: GridSpec, io: InsertObject, les: Lesion) -> bool:
    """Whether an insert and 2 mm around it lie in the painted cylinder (not in kept bone)."""
    reach = les.extent_mm() + 2.0
    for d in np.vstack([np.zeros(3), np.eye(3) * reach, -np.eye(3) * reach]):
        p = np.asarray(les.center_mm) + d
        idx = [int(round((p[2 - a] - grid.origin_mm[a]) / grid.spacing_mm[a])) for a in range(3)]
        if not all(0 <= i < n for i, n in zip(idx, obj.shape)):
            return False
        if obj[tuple(idx)] != np.float32(io.hu):
            return False
    return True


def apply_insert_object(
    obj: np.ndarray, grid: GridSpec, io: InsertObject, lesions: list[Lesion]
) -> tuple[list[Lesion], InsertObject]:
    """Paint the cylinder into the anatomy (in place) and return the lesions with the inserts.

    Args:
        obj: the anatomy's (z, y, x) HU on ``grid`` before blur and noise, changed in place:
            voxels inside the cylinder from :data:`AIR_HU` to below :data:`KEEP_HU` (soft
            tissue, fat, lung, blood) get the cylinder's HU; bone and the air outside the body
            are kept.
        grid: the grid of ``obj``.
        io: the insert object.
        lesions: the subject's calcifications and confounders.

    Returns:
        ``(lesions, io)``: ``lesions`` without those whose centre lies within 3 mm of the
        cylinder, then the inserts that lie wholly in its painted tissue; ``io`` with those.
    """
    cx, cy, cz = io.center_mm
    z, y, x = (grid.axis_mm(a) for a in range(3))
    zs = np.nonzero(np.abs(z - cz) <= io.length_mm / 2)[0]
    disc = (x[None, :] - cx) ** 2 + (y[:, None] - cy) ** 2 <= io.radius_mm**2
    if len(zs):
        sub = obj[zs[0] : zs[-1] + 1]
        paint = disc[None] & (sub < KEEP_HU) & (sub >= AIR_HU)
        sub[paint] = np.float32(io.hu)
    kept = [les for les in lesions if not io.contains(les.center_mm, margin_mm=3.0)]
    inserts = tuple(les for les in io.inserts if _in_cylinder_tissue(obj, grid, io, les))
    return kept + list(inserts), dataclasses.replace(io, inserts=inserts)
