"""The body habitus and skeleton curves of the realistic ("v2") anatomy.

A :class:`Habitus` adds to a subject's :class:`~calcscore.phantom.anatomy.Geometry` what the
first generator left out: a body outline that changes along z (abdomen, chest, shoulders, neck),
the arms (down at the sides or raised above the head), breasts, and the curves of the skeleton
of the chest wall: twelve pairs of ribs from their heads at the vertebral bodies round the chest
wall, descending towards the front; the costal cartilages joining ribs 1-7 to the sternum and
ribs 8-10 to the cartilage above; the clavicles; the humeri. It is drawn from its own random
stream (``subject.seed``), so the subject, its heart, vessels and calcium are those of the first
generator.

Levels (z, mm) follow the vertebrae: a vertebra and its disc every 26 mm (the phase of the first
generator's spine), T5 at the level about 40 mm above the aortic valve (the carina is about
50 mm above it), the manubrium's top (jugular notch) at ``geo.z_ster_top``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from calcscore.phantom._draw import resample_curve

#: vertebra + disc height (mm), as the first generator's spine
VERT_PITCH_MM = 26.0
#: how much deeper (front to back, as a fraction of the half width) the v2 chest is than the first
#: generator's, all of it in front: on the six open real chest CTs the body's depth is 0.65-0.96
#: (median 0.755) of its width, the skin-to-vertebral-body distance at the back as in the
#: phantoms; the first generator's bodies are 0.68 as deep as wide, which left the four-chamber
#: heart too little room between the sternum and the spine (docs/phantoms.md)
EXTRA_DEPTH = 0.14
#: superellipse exponent of the body outline
OUTLINE_P = 2.6
#: anterior angle (rad, 0 at the back, pi at the front) where rib n ends (costochondral junction)
RIB_END_THETA = (2.72, 2.6, 2.5, 2.44, 2.38, 2.32, 2.26, 2.1, 1.95, 1.8, 1.45, 1.15)
#: how far rib n descends from its head to its anterior end, as a fraction of ``rib_drop_mm``
RIB_DROP = (0.45, 0.75, 0.85, 0.95, 1.0, 1.05, 1.1, 1.1, 1.05, 0.95, 0.7, 0.5)


@dataclass
class Bone:
    """A tube of elliptical cross-section: points (N, 3) x, y, z mm, outward normals (N, 3), the
    semi-axes along the normal and across it (N,), and a name ("rib 5 L", "cartilage 3 R")."""

    name: str
    points: np.ndarray
    normals: np.ndarray
    r_normal: np.ndarray
    r_binormal: np.ndarray


@dataclass
class Habitus:
    """The realistic anatomy's drawn parameters and curves (x, y, z mm, LPS)."""

    arms_up: bool
    female: bool
    breast_mm: float
    shoulder_half_width_mm: float
    neck_half_width_mm: float
    neck_half_depth_mm: float
    neck_center_y_mm: float
    z_top: float  # jugular notch: the manubrium's top
    z_angle: float  # sternal angle (manubrium / body)
    z_xiphoid: float  # body / xiphoid process
    z_bottom: float  # xiphoid tip
    z_diaphragm: float
    vert_z0: float  # a vertebral body's lower endplate lies at vert_z0 + k * VERT_PITCH_MM
    t1_index: int  # k of T1
    cartilage_hu: float
    marrow_hu: float
    scapula: dict = field(default_factory=dict)
    humeral_heads: list[np.ndarray] = field(default_factory=list)
    arm_axes: list[np.ndarray] = field(default_factory=list)
    arm_radius_mm: float = 45.0
    ribs: list[Bone] = field(default_factory=list)
    cartilages: list[Bone] = field(default_factory=list)
    clavicles: list[Bone] = field(default_factory=list)

    def vertebra(self, k: int) -> tuple[str, float, float]:
        """Name ("C7", "T5", "L1"), lower and upper endplate z (mm) of vertebra number k."""
        n = self.t1_index - k + 1  # T number
        name = f"C{7 + n - 1}" if n < 1 else f"T{n}" if n <= 12 else f"L{n - 12}"
        lo = self.vert_z0 + k * VERT_PITCH_MM
        return name, lo, lo + VERT_PITCH_MM - 5.0


def deeper_chest(s):
    """The v2 subject: ``s`` with its body ``EXTRA_DEPTH`` times its half width deeper, the back
    (and so the spine) where it was and the front (skin, sternum, anterior ribs) moved forwards.

    Args:
        s: the drawn subject (:class:`calcscore.phantom.subject.Subject`).

    Returns:
        a copy with ``body_half_depth_mm`` and the body centre's y changed.
    """
    d = EXTRA_DEPTH * s.body_half_width_mm
    bx, by = s.body_center_xy_mm
    return replace(
        s, body_half_depth_mm=s.body_half_depth_mm + d / 2, body_center_xy_mm=(bx, by - d / 2)
    )


def outline(hab: Habitus, geo, z: float) -> tuple[float, float, float, float]:
    """Body outline at height z: centre y and half width, half depth (mm) of the trunk's
    superellipse, and the neck fraction (0 trunk, 1 neck) that blends it into the neck.

    Args:
        hab: the habitus (levels, shoulders, arms, neck).
        geo: the subject's geometry (body size and centre).
        z: the height (mm).

    Returns:
        ``(cy, half_width, half_depth, neck)``: mm, mm, mm and the fraction.
    """
    s = geo.subject
    w, d = s.body_half_width_mm, s.body_half_depth_mm
    low = float(np.clip((hab.z_diaphragm - 20 - z) / 60.0, 0, 1))
    w *= 1 - 0.05 * low
    d *= 1 + 0.04 * low
    up = float(np.clip((z - (hab.z_top - 70)) / 80.0, 0, 1))
    up = up * up * (3 - 2 * up)
    if hab.arms_up:
        w *= 1 - 0.08 * up
    else:
        w += (hab.shoulder_half_width_mm - w) * up
    # the neck's base slopes: from the jugular notch in front to above T1 behind
    z_neck = hab.z_top + (58.0 if not hab.arms_up else 45.0)
    t = float(np.clip((z - z_neck) / 30.0, 0, 1))
    t = t * t * (3 - 2 * t)
    cy = geo.body_center[1] + t * (hab.neck_center_y_mm - geo.body_center[1])
    return cy, w + t * (hab.neck_half_width_mm - w), d + t * (hab.neck_half_depth_mm - d), t


def radius_at(ax: float, ay: float, theta) -> np.ndarray:
    """Radius (mm) of the superellipse outline at polar angle theta (0 back, pi front).

    Args:
        ax: the half width (mm, along x).
        ay: the half depth (mm, along y).
        theta: polar angle(s) (rad) about the body's centre, positive towards the patient's
            left (+x).

    Returns:
        the radius (mm), of the shape of ``theta``.
    """
    th = np.asarray(theta, dtype=float)
    return ((np.abs(np.sin(th)) / ax) ** OUTLINE_P + (np.abs(np.cos(th)) / ay) ** OUTLINE_P) ** (
        -1.0 / OUTLINE_P
    )


def extra_muscle(hab: Habitus, theta, z) -> np.ndarray | float:
    """Shoulder-girdle muscle (mm) over the upper back, where the scapulae lie. With ``z`` None
    the angular profile alone (peak 16 mm); with ``theta`` None the height profile (0 to 1).

    Args:
        hab: the habitus (its scapulae's levels).
        theta: polar angle(s) (rad, 0 back, pi front) or None.
        z: height(s) (mm) or None.

    Returns:
        the thickness (mm) or, with ``theta`` None, the height profile; 1.0 when both are None.
    """
    sc = hab.scapula
    band: np.ndarray | float = 1.0
    if z is not None:
        band = np.clip((np.asarray(z) - (sc["z_bottom"] - 20)) / 40.0, 0, 1)
        band = band * np.clip((sc["z_top"] + 30 - np.asarray(z)) / 30.0, 0, 1)
    if theta is None:
        return band
    return 16.0 * band * np.exp(-(((np.abs(theta) - 1.0) / 0.5) ** 2))


def chest_wall_inset(hab: Habitus, geo, theta, z) -> np.ndarray:
    """Depth (mm) below the skin of the inner surface of the chest wall's muscle: skin, fat,
    muscle and the shoulder girdle's muscle; ribs lie just inside it.

    Args:
        hab: the habitus.
        geo: the subject's geometry (its fat and muscle).
        theta: polar angle(s) (rad, 0 back, pi front).
        z: height(s) (mm) or None (no height profile of the shoulder girdle's muscle).

    Returns:
        the depth (mm), of the shape of ``theta`` (and ``z``).
    """
    from calcscore.phantom.tissue import fat_thickness, muscle_thickness

    s = geo.subject
    return 2.0 + fat_thickness(s, theta) + muscle_thickness(s, theta) + extra_muscle(hab, theta, z)


def wall_point(hab: Habitus, geo, theta: float, z: float, extra_inset: float) -> np.ndarray:
    """The point at polar angle theta, height z, ``extra_inset`` mm inside the chest wall muscle.

    Args:
        hab: the habitus.
        geo: the subject's geometry.
        theta: polar angle (rad, 0 back, pi front, positive towards the patient's left).
        z: height (mm).
        extra_inset: how far (mm) inside the chest wall's muscle.

    Returns:
        the point (x, y, z) mm.
    """
    cy, ax, ay, _ = outline(hab, geo, z)
    rho = float(radius_at(ax, ay, theta)) - float(chest_wall_inset(hab, geo, theta, z))
    rho -= extra_inset
    return np.array([geo.body_center[0] + rho * np.sin(theta), cy + rho * np.cos(theta), z])


def sternum_y(hab: Habitus, geo, z) -> np.ndarray:
    """y (mm) of the sternum's centre line at height z: behind the front wall's fat and muscle,
    the manubrium tilted back (as the first generator's sternum at the heart).

    Args:
        hab: the habitus (unused: the line depends on the subject alone).
        geo: the subject's geometry.
        z: height(s) (mm).

    Returns:
        y (mm), of the shape of ``z``.
    """
    from calcscore.phantom.tissue import _sternum_y

    return _sternum_y(geo.subject) + 0.07 * (np.asarray(z, dtype=float) - geo.subject.z_av_mm)


def sternum_half_width(hab: Habitus, z) -> np.ndarray:
    """Half width (mm) of the sternum at height z: manubrium, body, xiphoid."""
    z = np.asarray(z, dtype=float)
    man = 15.0 + 12.0 * np.clip((z - hab.z_angle) / (hab.z_top - hab.z_angle), 0, 1)
    body = 13.0 + 4.0 * np.clip((z - hab.z_xiphoid) / max(hab.z_angle - hab.z_xiphoid, 1.0), 0, 1)
    xiph = 5.0 + 6.0 * np.clip((z - hab.z_bottom) / max(hab.z_xiphoid - hab.z_bottom, 1.0), 0, 1)
    return np.where(z > hab.z_angle, man, np.where(z > hab.z_xiphoid, body, xiph))


def _theta_of(geo, p) -> float:
    return float(np.arctan2(p[0] - geo.body_center[0], p[1] - geo.body_center[1]))


def _radial(theta: float) -> np.ndarray:
    return np.array([np.sin(theta), np.cos(theta), 0.0])


def _bone(name, ctrl, normals, rn, rb, step: float = 2.5) -> Bone:
    """Resample control points and interpolate their normals and semi-axes along the curve."""
    ctrl = np.asarray(ctrl, dtype=float)
    pts = resample_curve(ctrl, step)
    # nearest control point's index, by arc length fraction
    sc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
    sp = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    f = sp / max(sp[-1], 1e-6) * sc[-1]
    nrm = np.stack([np.interp(f, sc, np.asarray(normals)[:, k]) for k in range(3)], axis=1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-9
    return Bone(name, pts, nrm, np.interp(f, sc, rn), np.interp(f, sc, rb))


def build_habitus(geo) -> Habitus:
    """Draw the realistic anatomy's parameters and build its curves for ``geo``'s subject."""
    s = geo.subject
    rng = np.random.default_rng([s.seed, 26])
    w, d = s.body_half_width_mm, s.body_half_depth_mm
    z_top = float(geo.z_ster_top)
    z_bottom = float(geo.z_ster_bottom)
    # the vertebral phase of the first generator's spine: lower endplates at rib_z0 - 3 + 26 k
    vert_z0 = float(geo.rib_z0 - 3.0)
    k5 = int(round((s.z_av_mm + 40.0 - (vert_z0 + 10.5)) / VERT_PITCH_MM))
    female = bool(rng.random() < 0.45)
    arms_up = bool(rng.random() < 0.7)
    hab = Habitus(
        arms_up=arms_up,
        female=female,
        breast_mm=float(rng.uniform(10, 30 + 0.6 * s.fat_mm)) if female else 0.0,
        shoulder_half_width_mm=float(w * rng.uniform(1.12, 1.22) + 10),
        neck_half_width_mm=float(0.36 * w + rng.uniform(0, 8)),
        neck_half_depth_mm=float(0.42 * d + rng.uniform(0, 6)),
        neck_center_y_mm=float(geo.body_center[1] + 0.22 * d),
        z_top=z_top,
        z_angle=z_top - float(rng.uniform(45, 55)),
        z_xiphoid=z_bottom + float(rng.uniform(25, 35)),
        z_bottom=z_bottom,
        z_diaphragm=float(geo.z_diaphragm),
        vert_z0=vert_z0,
        t1_index=k5 + 4,
        # costal cartilage: soft-tissue density, denser with age (before its calcifications)
        cartilage_hu=float(np.clip(95 + 2.2 * (s.age - 50) + rng.normal(0, 12), 90, 190)),
        marrow_hu=float(s.cancellous_hu),
    )
    hab.scapula = {
        "z_top": z_top + (40.0 if arms_up else 22.0),
        "z_bottom": z_top - float(rng.uniform(135, 165)) + (25.0 if arms_up else 0.0),
        "theta_medial": float(rng.uniform(0.5, 0.62)),
        "theta_lateral": float(rng.uniform(1.35, 1.5)),
        "rotation": 0.35 if arms_up else 0.0,
    }
    _build_arms(hab, geo, rng)
    _build_ribs(hab, geo, rng)
    _build_clavicles(hab, geo)
    return hab


def _build_arms(hab: Habitus, geo, rng) -> None:
    bx, by = geo.body_center
    s = geo.subject
    hab.arm_radius_mm = float(38 + 0.45 * s.fat_mm + rng.uniform(-3, 3))
    gap = float(rng.uniform(-5, 15))
    for side in (-1.0, 1.0):
        if hab.arms_up:
            head = np.array(
                [bx + side * 0.86 * s.body_half_width_mm, by + 0.18 * s.body_half_depth_mm, 0.0]
            )
            head[2] = hab.z_top + 22 + rng.uniform(-5, 5)
            direc = np.array([side * 0.28, 0.1, 1.0])
        else:
            head = np.array(
                [bx + side * (hab.shoulder_half_width_mm - 32), by + 0.05 * s.body_half_depth_mm, 0]
            )
            head[2] = hab.z_top + rng.uniform(-2, 8)
            direc = np.array([side * 0.05, 0.03, -1.0])
        direc /= np.linalg.norm(direc)
        hab.humeral_heads.append(head)
        far = head + direc * 360.0
        if not hab.arms_up:  # the arm hangs beside the trunk, a few millimetres from it
            far[0] = bx + side * (s.body_half_width_mm + hab.arm_radius_mm + gap)
        hab.arm_axes.append(resample_curve(np.array([head, 0.5 * (head + far), far]), 6.0))


def _build_ribs(hab: Habitus, geo, rng) -> None:
    """Ribs 1-12 on both sides from the costovertebral joints round the chest wall, and the
    costal cartilages from their anterior ends to the sternum (1-7) or the cartilage above."""
    rx, ry = geo.vb_radii
    sx = geo.spine_x
    att = {1: hab.z_top - 10.0, 2: hab.z_angle}
    for n, zz in zip(range(3, 8), np.linspace(hab.z_angle - 22, hab.z_xiphoid + 4, 5)):
        att[n] = float(zz)
    for side in (-1.0, 1.0):
        ends = {}
        for n in range(1, 13):
            k = hab.t1_index - (n - 1)
            _, lo, hi = hab.vertebra(k)
            z_h = hi + 2.5 if 2 <= n <= 9 else 0.5 * (lo + hi) + 4
            sy = float(geo.spine_y(z_h))
            head = np.array([sx + side * (rx + 1.5), sy + 0.25 * ry, z_h])
            neck = np.array([sx + side * (rx + 12), sy + ry + 6, z_h - 1])
            tuber = np.array([sx + side * (rx + 24), sy + ry + 14, z_h - 2.5])
            th_a = abs(_theta_of(geo, tuber + np.array([side * 22, 4, 0])))
            th_e = RIB_END_THETA[n - 1] + rng.normal(0, 0.03)
            drop = RIB_DROP[n - 1] * geo.rib_drop_mm * rng.uniform(0.92, 1.08)
            rn = 3.6 if n == 1 else 2.6 if n >= 11 else 3.0
            rb = 8.5 if n == 1 else 4.5 if n >= 11 else 6.5
            ctrl, nrm = [head, neck, tuber], [_radial(side * 0.35), _radial(side * 0.6)]
            nrm.append(_radial(side * 0.9))
            rns, rbs = [4.5, 4.0, rn + 0.5], [4.5, 4.8, rb - 1]
            for f in np.linspace(0.0, 1.0, 9):
                th = th_a + f * (th_e - th_a)
                z = z_h - 4.0 - drop * f**1.35
                ctrl.append(wall_point(hab, geo, side * th, z, rn + 1.5))
                nrm.append(_radial(side * th))
                rns.append(rn)
                rbs.append(rb)
            hab.ribs.append(_bone(f"rib {n} {'L' if side > 0 else 'R'}", ctrl, nrm, rns, rbs))
            ends[n] = (side * th_e, ctrl[-1][2])
        for n in range(1, 11):
            th_e, z_e = ends[n]
            if n <= 7:
                z_s = att[n]
                y_s = float(sternum_y(hab, geo, z_s))
                w_s = float(sternum_half_width(hab, z_s))
                end = np.array([geo.body_center[0] + side * (w_s - 1.0), y_s, z_s])
                th_s = _theta_of(geo, end)
                z_mid = min(z_e, z_s) - 4.0 * max(n - 4, 0)
                mid = wall_point(hab, geo, 0.5 * (th_e + th_s), 0.5 * (z_e + z_mid), 4.5)
                ctrl = [wall_point(hab, geo, th_e, z_e, 4.5), mid, end]
                nrm = [_radial(th_e), _radial(0.5 * (th_e + th_s)), _radial(th_s)]
            else:  # ribs 8-10: up and forwards to the cartilage of the rib above
                above = hab.cartilages[-1]
                target = above.points[int(0.45 * (len(above.points) - 1))]
                th_t = _theta_of(geo, target)
                mid = wall_point(hab, geo, 0.5 * (th_e + th_t), z_e - 6.0, 4.5)
                ctrl = [wall_point(hab, geo, th_e, z_e, 4.5), mid, target]
                nrm = [_radial(th_e), _radial(0.5 * (th_e + th_t)), _radial(th_t)]
            r_b = 6.0 if n <= 7 else 5.0
            hab.cartilages.append(
                _bone(
                    f"cartilage {n} {'L' if side > 0 else 'R'}",
                    ctrl,
                    nrm,
                    [3.6, 3.4, 3.2],
                    [r_b, r_b, r_b - 0.5],
                    step=2.0,
                )
            )


def _build_clavicles(hab: Habitus, geo) -> None:
    """S-shaped clavicles from the manubrium's top corners to the acromion over each humerus."""
    bx = geo.body_center[0]
    for head, side in zip(hab.humeral_heads, (-1.0, 1.0)):
        z0 = hab.z_top - 2.0
        y0 = float(sternum_y(hab, geo, z0)) - 4.0
        med = np.array([bx + side * 24.0, y0, z0])
        ac = head + np.array([-side * 18.0, 6.0, 26.0 if not hab.arms_up else 18.0])
        mid1 = med + (ac - med) * 0.35 + np.array([0, -10.0, 6.0])
        mid2 = med + (ac - med) * 0.72 + np.array([0, 4.0, 2.0])
        ctrl = [med, mid1, mid2, ac]
        up = [np.array([0.0, 0.0, 1.0])] * 4
        hab.clavicles.append(
            _bone(
                f"clavicle {'L' if side > 0 else 'R'}",
                ctrl,
                up,
                [8.0, 6.0, 5.0, 4.5],
                [9.0, 6.5, 6.5, 8.0],
                step=2.5,
            )
        )
