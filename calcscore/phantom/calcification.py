"""Calcifications and the confounders behind the paper's false positives.

Every object is a :class:`Lesion`: an ellipsoid (or, for wires and pacemaker leads, a tube
along points) with a peak density in HU. Labelled lesions carry a :class:`~calcscore.labels.Label`;
confounders (calcified lymph nodes, costal cartilage calcifications, osteophytes, metal) carry
label 0 and are never labelled. Cardiac motion of a non-gated scan is modelled by ghosts: copies
of a lesion shifted by a few millimetres with fractional weights, which blur or double it; the
voxels of a ghost at >= 130 HU are labelled as calcium, as the paper's observers did.

The coronary calcium burden of a subject is drawn per CAC risk category (Agatston 0-10,
11-100, 101-1000, > 1000) so that cohorts cover all four categories.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from calcscore.labels import Label
from calcscore.phantom._draw import arc_length, curve_frames
from calcscore.phantom.anatomy import Geometry

log = logging.getLogger(__name__)

#: Probabilities of the target CAC risk category I..IV of a subject.
CATEGORY_PROBABILITIES = (0.34, 0.22, 0.26, 0.18)
#: Agatston ranges drawn within each category (log-uniform; category I: half are zero).
CATEGORY_TARGETS = ((1.0, 9.0), (16.0, 85.0), (130.0, 850.0), (1250.0, 3500.0))
P_TAC = 0.85
P_AV = 0.2
P_MV = 0.1
METAL_HU = 3071.0
#: Measured Agatston / (volume x density factor / 3 mm) of drawn plaques: blur and motion make
#: the >= 130 HU footprint of a plaque about twice its volume.
AGATSTON_GAIN = 1.9


@dataclass(frozen=True, eq=False)
class Lesion:
    """One dense object. ``label`` 0 means a confounder that no observer labels.

    ``center_mm`` is (x, y, z); ``axes_mm`` the semi-axes along the columns of ``rot``;
    ``ghosts`` are (dx, dy, dz, weight) copies (weights sum to 1) for cardiac motion; ``points``
    makes the object a tube of radius ``axes_mm[0]`` along (N, 3) points instead.
    """

    label: int
    kind: str
    center_mm: tuple[float, float, float]
    axes_mm: tuple[float, float, float]
    rot: np.ndarray
    peak_hu: float
    ghosts: tuple[tuple[float, float, float, float], ...] = ((0.0, 0.0, 0.0, 1.0),)
    points: np.ndarray | None = None

    @property
    def is_metal(self) -> bool:
        return self.peak_hu >= 2000

    @property
    def volume_mm3(self) -> float:
        if self.points is not None:
            return float(np.pi * self.axes_mm[0] ** 2 * arc_length(self.points)[-1])
        return float(4.0 / 3.0 * np.pi * np.prod(self.axes_mm))

    def extent_mm(self) -> float:
        """Radius of a sphere around ``center_mm`` that holds the object and its ghosts."""
        shift = max(np.linalg.norm(g[:3]) for g in self.ghosts)
        if self.points is not None:
            return float(
                np.linalg.norm(self.points - np.asarray(self.center_mm), axis=1).max()
                + self.axes_mm[0]
                + shift
            )
        return float(max(self.axes_mm) + shift)


def _frame(t: np.ndarray, n: np.ndarray) -> np.ndarray:
    t = t / np.linalg.norm(t)
    n = n - t * (n @ t)
    n = n / np.linalg.norm(n)
    return np.stack([t, n, np.cross(t, n)], axis=1)


def density_factor(peak_hu: float) -> int:
    return 1 if peak_hu < 200 else 2 if peak_hu < 300 else 3 if peak_hu < 400 else 4


def estimate_agatston(lesions: list[Lesion]) -> float:
    """Rough Agatston of coronary lesions (volume x density factor / 3 mm), used to draw burden."""
    return float(
        sum(
            les.volume_mm3 * density_factor(les.peak_hu) / 3.0
            for les in lesions
            if les.label in (Label.LAD, Label.LCX, Label.RCA)
        )
    )


@dataclass(frozen=True)
class Burden:
    """The drawn calcium burden of a subject."""

    cac_category: int
    cac_target_agatston: float
    has_tac: bool
    has_av: bool
    has_mv: bool
    motion_mm: float


def draw_burden(rng, *, age: float, cac_category: int | None = None) -> Burden:
    """Draw a subject's calcium burden: CAC risk category and Agatston target, whether there is
    aortic (TAC), aortic valve and mitral calcium, and the cardiac motion (ghosts).

    Args:
        rng: seed or numpy Generator.
        age: the subject's age (years); older subjects fall more often in category IV.
        cac_category: force the coronary risk category (1-4); None: drawn by
            :data:`CATEGORY_PROBABILITIES`.

    Returns:
        the :class:`Burden`.
    """
    rng = np.random.default_rng(rng)
    if cac_category is None:
        p = np.asarray(CATEGORY_PROBABILITIES) * np.array(
            [1.15 - (age - 55) / 60, 1, 1, 0.85 + (age - 55) / 60]
        )
        cac_category = int(rng.choice(4, p=p / p.sum())) + 1
    if cac_category not in (1, 2, 3, 4):
        raise ValueError(f"`cac_category` must be 1, 2, 3 or 4, got {cac_category=}")
    lo, hi = CATEGORY_TARGETS[cac_category - 1]
    target = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if cac_category == 1 and rng.random() < 0.5:
        target = 0.0
    motion = float(rng.uniform(0.8, 3.2)) if rng.random() < 0.55 else 0.0
    return Burden(
        cac_category=cac_category,
        cac_target_agatston=target,
        has_tac=bool(rng.random() < P_TAC),
        has_av=bool(rng.random() < P_AV),
        has_mv=bool(rng.random() < P_MV),
        motion_mm=motion,
    )


def _ghosts(
    rng: np.random.Generator, amplitude: float
) -> tuple[tuple[float, float, float, float], ...]:
    if amplitude <= 0:
        return ((0.0, 0.0, 0.0, 1.0),)
    d = rng.normal(size=3) * np.array([1.0, 1.0, 0.35])
    d = d / np.linalg.norm(d) * amplitude * rng.uniform(0.6, 1.0)
    if rng.random() < 0.5:  # doubling: two copies
        w = rng.uniform(0.5, 0.65)
        return ((*(-d / 2), w), (*(d / 2), 1 - w))
    ks = np.linspace(-0.5, 0.5, 4)  # blur: smeared along the motion
    return tuple((*(k * d), 0.25) for k in ks)


def coronary_lesions(geo: Geometry, burden: Burden, rng) -> list[Lesion]:
    """Plaques along the coronary curves until the rough Agatston reaches the target.

    Args:
        geo: the subject's geometry (coronary curves and lumen radii, (x, y, z) mm).
        burden: the drawn burden (Agatston target, motion amplitude).
        rng: seed or numpy Generator.

    Returns:
        the LAD, LCX and RCA plaques (none when the target is 0).
    """
    rng = np.random.default_rng(rng)
    target = burden.cac_target_agatston
    out: list[Lesion] = []
    if target <= 0:
        return out
    names = ("LAD", "LCX", "RCA")
    labels = {"LAD": Label.LAD, "LCX": Label.LCX, "RCA": Label.RCA}
    motion_factor = {"LAD": 0.7, "LCX": 0.8, "RCA": 1.0}
    frames = {n: curve_frames(geo.coronaries[n]) for n in names}
    est = 0.0
    for _ in range(200):
        if est >= target:
            break
        remaining = target - est
        name = str(rng.choice(names, p=[0.47, 0.23, 0.30]))
        pts = geo.coronaries[name]
        t_, n_, b_ = frames[name]
        s = arc_length(pts)
        i = int(np.clip(np.searchsorted(s, s[-1] * rng.beta(1.3, 2.4)), 0, len(pts) - 1))
        if target < 12:  # one small plaque, dense enough to be seen
            d = rng.uniform(1.7, 2.3)
        elif target < 150:
            d = rng.uniform(1.2, 3.8)
        else:
            d = rng.uniform(2.2, 6.0)
        spotty = target >= 12 and rng.random() < 0.2  # tiny spotty calcium, often below 130 HU
        if spotty:
            d = rng.uniform(0.5, 1.4)
        length = float(np.clip(d * rng.uniform(1.0, 1.3 if target < 12 else 2.6), 0.8, 15.0))
        peak = float(np.clip(rng.uniform(150, 420) + 140 * d, 450 if target < 12 else 150, 1200))
        axes = (length / 2, d / 2 * 0.8, d / 2)
        vol = 4 / 3 * np.pi * np.prod(axes)
        gain = AGATSTON_GAIN * vol * density_factor(peak) / 3.0
        if gain > 1.6 * remaining and not spotty and target >= 12:
            scale = min(max((1.6 * remaining / gain) ** (1 / 3), 1.3 / d), 1.0)
            axes = tuple(a * scale for a in axes)
            gain = AGATSTON_GAIN * 4 / 3 * np.pi * np.prod(axes) * density_factor(peak) / 3.0
        psi = rng.uniform(0, 2 * np.pi)
        radial = n_[i] * np.cos(psi) + b_[i] * np.sin(psi)
        r_lumen = float(geo.coronary_radius[name][i])
        center = pts[i] + radial * r_lumen * 0.55
        rot = _frame(t_[i], radial)
        out.append(
            Lesion(
                int(labels[name]),
                "coronary",
                tuple(center),
                axes,
                rot,
                peak,
                _ghosts(rng, burden.motion_mm * motion_factor[name]),
            )
        )
        est += gain
    return out


def aortic_lesions(geo: Geometry, rng, *, n: int | None = None) -> list[Lesion]:
    """Plaques in the aortic wall: arch and descending aorta mostly, some in the ascending aorta.

    Args:
        geo: the subject's geometry (aortic centreline, radius and segments, (x, y, z) mm).
        rng: seed or numpy Generator.
        n: the number of plaques; None: drawn log-uniformly from 1 to 40.

    Returns:
        ``n`` TAC plaques.
    """
    rng = np.random.default_rng(rng)
    if n is None:
        n = int(np.clip(np.round(np.exp(rng.uniform(0, np.log(40)))), 1, 40))
    t_, n_, b_ = curve_frames(geo.aorta)
    seg = geo.aorta_segment
    weights = np.select([seg == 0, seg == 1, seg == 2], [0.1, 0.4, 2.0], 1.0)
    # keep the lowest 30 mm out (it leaves most fields of view)
    weights[geo.aorta[:, 2] < geo.aorta[:, 2].min() + 30] = 0.0
    weights = weights / weights.sum()
    out = []
    for _ in range(n):
        i = int(rng.choice(len(geo.aorta), p=weights))
        psi = rng.uniform(0, 2 * np.pi)
        radial = n_[i] * np.cos(psi) + b_[i] * np.sin(psi)
        r = float(geo.aorta_radius[i])
        along, around, thick = rng.uniform(1.2, 6.0), rng.uniform(1.2, 7.0), rng.uniform(0.6, 1.6)
        center = geo.aorta[i] + radial * (r - thick * 0.6)
        rot = np.stack([t_[i], np.cross(radial, t_[i]), radial], axis=1)
        peak = float(rng.uniform(220, 1150))
        out.append(
            Lesion(int(Label.TAC), "aortic", tuple(center), (along, around, thick), rot, peak)
        )
    return out


def _ring_basis(normal: np.ndarray, prefer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e1 = prefer - normal * (prefer @ normal)
    e1 = e1 / np.linalg.norm(e1)
    return e1, np.cross(normal, e1)


def valve_lesions(geo: Geometry, burden: Burden, rng) -> list[Lesion]:
    """Aortic valve nodules (annulus, leaflets) and mitral annulus calcification (posterior arc).

    Args:
        geo: the subject's geometry (valve centres, normals and radii, (x, y, z) mm).
        burden: the drawn burden (``has_av``, ``has_mv``, motion amplitude).
        rng: seed or numpy Generator.

    Returns:
        the AV and MV lesions (none when the burden has neither).
    """
    rng = np.random.default_rng(rng)
    out = []
    if burden.has_av:
        e1, e2 = _ring_basis(geo.av_normal, np.array([1.0, 0.0, 0.0]))
        for _ in range(int(rng.integers(1, 6))):
            a = rng.uniform(0, 2 * np.pi)
            f = rng.uniform(0.55, 1.0)
            c = (
                geo.av_center
                + geo.av_radius * f * (np.cos(a) * e1 + np.sin(a) * e2)
                + geo.av_normal * rng.uniform(-2.5, 3.0)
            )
            axes = tuple(rng.uniform(1.0, 3.5, 3))
            rot = _frame(geo.av_normal, e1)
            out.append(
                Lesion(
                    int(Label.AV),
                    "aortic_valve",
                    tuple(c),
                    axes,
                    rot,
                    float(rng.uniform(300, 1100)),
                    _ghosts(rng, 0.6 * burden.motion_mm),
                )
            )
    if burden.has_mv:
        post = np.array([0.5, 1.0, -0.3])
        e1, e2 = _ring_basis(geo.mv_normal, post)
        span = np.radians(rng.uniform(40, 200))
        a0 = rng.normal(0, 0.3)
        n_beads = max(int(span * geo.mv_radius / 4.0), 1)
        thick = rng.uniform(1.2, 2.8)
        peak = float(rng.uniform(300, 1000))
        ghosts = _ghosts(rng, 0.6 * burden.motion_mm)
        for a in a0 + np.linspace(-span / 2, span / 2, n_beads):
            radial = np.cos(a) * e1 + np.sin(a) * e2
            c = geo.mv_center + geo.mv_radius * radial
            tang = np.cross(geo.mv_normal, radial)
            rot = _frame(tang, radial)
            out.append(
                Lesion(
                    int(Label.MV),
                    "mitral_annulus",
                    tuple(c),
                    (2.6, thick * rng.uniform(0.8, 1.2), thick),
                    rot,
                    peak,
                    ghosts,
                )
            )
    return out


def draw_lesions(geo: Geometry, burden: Burden, rng) -> list[Lesion]:
    """All calcifications and confounders of one subject (confounders first, labels drawn last).

    Args:
        geo: the subject's geometry.
        burden: the drawn burden (which calcium, how much, how much motion).
        rng: seed or numpy Generator; the same seed gives the same lesions.

    Returns:
        the confounders, then the TAC, valve and coronary lesions.
    """
    from calcscore.phantom.confounders import confounders

    rng = np.random.default_rng(rng)
    out = confounders(geo, rng, age=geo.subject.age)
    if burden.has_tac:
        out += aortic_lesions(geo, rng)
    out += valve_lesions(geo, burden, rng)
    out += coronary_lesions(geo, burden, rng)
    log.debug(
        "%d objects, rough Agatston %.0f (target %.0f)",
        len(out),
        estimate_agatston(out),
        burden.cac_target_agatston,
    )
    return out
