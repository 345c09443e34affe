"""The realistic ("v2") heart: four chambers in epicardial fat, the coronary arteries in their
grooves (the aorta and great vessels round it: :mod:`calcscore.phantom.aorta`).

The heart is built in a frame of its own: ``u`` the long axis (base to apex, anterior, left and
down), ``e2`` across the interventricular septum from the right ventricle to the left (left and
back), ``e3 = u x e2`` (front and up: the sternocostal surface). The ventricles lie on the apex
side of the atrioventricular (AV) plane, the atria on the other side, a few millimetres apart:
the AV groove. The left ventricle (LV) is a half-ellipsoid with a thick wall (10 mm), the right
ventricle (RV) a wider, thin-walled (4 mm) ellipsoid wrapped round its right and front, so that
the anterior and posterior interventricular (IV) grooves are the creases where the two meet; the
atria (LA behind, RA on the right) are ellipsoids on the AV plane. The chambers' union, rounded
by a smooth minimum, is wrapped in epicardial fat that fills the creases; the outflow tracts
lead to the aortic and pulmonary valves. :func:`_fit_heart` moves the heart back, flattens it
front to back or shrinks it until no bone lies within its epicardial fat (shallow chests).

The coronary arteries follow the grooves: the left main from the left sinus to the top of the
anterior IV groove, the LAD down that groove to the apex, the LCX round the left AV groove
towards the crux, the RCA from the right sinus round the right AV groove to the crux and down
the posterior IV groove. Each runs in the crease a little outside both chambers' surfaces, so
the fat of the groove surrounds it.

Only for ``anatomy="v2"``; the first generator's heart is in :mod:`calcscore.phantom.render`.
HU are non-contrast (the generator has no contrast option): blood 38, myocardium 46.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np

from calcscore.phantom._draw import arc_length, resample_curve

log = logging.getLogger(__name__)

#: the fat plane (mm) between atrial and ventricular myocardium: the AV groove's floor
AV_GAP_MM = 3.0
#: radius (mm) of the smooth minimum that rounds the chambers' union (the groove fillets)
SMOOTH_MM = 10.0
#: fat (mm) round each coronary artery beyond its lumen, in its groove
GROOVE_FAT_MM = 3.5
#: how much wider and longer the heart grows each time :func:`_fit_heart` flattens it front to
#: back by 5 % (a soft heart in a shallow chest pushes the lungs aside): 0.95 ** -0.35
SPREAD = 0.95**-0.35
#: the chambers' walls (mm)
WALL_MM = {"LV": 10.0, "RV": 4.0, "LA": 2.5, "RA": 2.5}


@dataclass
class Chamber:
    """An ellipsoidal chamber: outer surface, wall thickness and the half-space it keeps.

    ``axes`` are the outer semi-axes along the columns of ``rot`` (x, y, z unit vectors); the
    chamber keeps the points with ``side * (cut_n . p - cut_d) >= 0`` (ventricles on the apex
    side of the AV plane, atria on the other)."""

    name: str
    center: np.ndarray
    axes: np.ndarray
    rot: np.ndarray
    wall_mm: float
    cut_n: np.ndarray
    cut_d: float
    side: float

    def sd_outer(self, x, y, z):
        """The signed distance (mm) to the chamber's outer surface, cut by the AV plane.

        Args:
            x, y, z: coordinates in mm (arrays broadcast together).

        Returns:
            negative inside, positive outside.
        """
        return np.maximum(_ell_sd(x, y, z, self.center, self.axes, self.rot), self._cut(x, y, z))

    def sd_inner(self, x, y, z):
        """The signed distance (mm) to the blood pool: the outer surface less the wall.

        Args:
            x, y, z: coordinates in mm (arrays broadcast together).

        Returns:
            negative inside, positive outside.
        """
        inner = np.maximum(self.axes - self.wall_mm, 2.0)
        return np.maximum(_ell_sd(x, y, z, self.center, inner, self.rot), self._cut(x, y, z) + 1.0)

    def sd_ellipsoid(self, x, y, z):
        """The signed distance to the whole ellipsoid, the AV plane's cut ignored.

        Args:
            x, y, z: coordinates in mm (arrays broadcast together).

        Returns:
            negative inside, positive outside.
        """
        return _ell_sd(x, y, z, self.center, self.axes, self.rot)

    def _cut(self, x, y, z):
        n = self.cut_n
        return -self.side * (n[0] * x + n[1] * y + n[2] * z - self.cut_d)


@dataclass
class Heart:
    """The four-chamber heart of the realistic anatomy (x, y, z mm, LPS)."""

    origin: np.ndarray  # centre of the AV plane
    u: np.ndarray
    e2: np.ndarray
    e3: np.ndarray
    chambers: dict[str, Chamber]
    outflow: dict[str, tuple[np.ndarray, float]]  # "LVOT", "RVOT": (points, radius)
    orifices: dict[str, tuple[np.ndarray, float]]  # "MV", "TV": (centre, radius)
    grooves: dict[str, np.ndarray] = field(default_factory=dict)  # "AV", "AIV", "PIV" curves
    #: the left ventricle's long axis where it meets the AV plane
    lv_base: np.ndarray = field(default_factory=lambda: np.zeros(3))
    #: how :func:`_fit_heart` fitted the heart between sternum and spine: shrunk by
    #: ``fit_scale``, flattened front to back by ``fit_squash``, moved ``fit_shift_mm`` back
    fit_scale: float = 1.0
    fit_squash: float = 1.0
    fit_shift_mm: float = 0.0

    def sd_chamber(self, name: str, p) -> np.ndarray:
        """Signed distance (mm, approximate, negative inside) of points (N, 3) to a chamber's
        outer surface; the RV's is the RV's alone (the LV overlaps it at the septum)."""
        p = np.atleast_2d(np.asarray(p, dtype=float))
        return self.chambers[name].sd_outer(p[:, 0], p[:, 1], p[:, 2])

    def sd_heart(self, p) -> np.ndarray:
        """Signed distance (mm) of points (N, 3) to the chambers' rounded union."""
        p = np.atleast_2d(np.asarray(p, dtype=float))
        return _union([c.sd_outer(p[:, 0], p[:, 1], p[:, 2]) for c in self.chambers.values()])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _ell_sd(x, y, z, c, axes, rot):
    """Radial signed distance (mm) to an ellipsoid (as :func:`calcscore.phantom._draw.ellipsoid_sd`)
    at broadcastable coordinates."""
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    q2 = 0.0
    for k in range(3):
        t = rot[0, k] * dx + rot[1, k] * dy + rot[2, k] * dz
        q2 = q2 + (t / axes[k]) ** 2
    rho = np.sqrt(dx * dx + dy * dy + dz * dz)
    q = np.sqrt(q2)
    return rho * (1.0 - 1.0 / np.maximum(q, 1e-6))


def _smin(a, b, k: float = SMOOTH_MM):
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + h * (a - b) - k * h * (1.0 - h)


def _union(sds):
    out = sds[0]
    for s in sds[1:]:
        out = _smin(out, s)
    return out


# ---- geometry ---------------------------------------------------------------------------------
def build_heart(geo, rng: np.random.Generator) -> Heart:
    """The four chambers of ``geo``'s subject, inside the first generator's heart envelope
    (``heart_center``, ``heart_axes``, ``heart_u``), with the aortic valve where it was."""
    s = geo.subject
    sc = s.heart_scale
    L, B = geo.heart_axes
    u = geo.heart_u
    e2 = _unit(np.array([1.0, 1.0, 0.0]) - u * (u @ np.array([1.0, 1.0, 0.0])))
    e2 = _unit(e2 + rng.normal(0, 0.05, 3) - u * (u @ e2))
    e2 = _unit(e2 - u * (u @ e2))
    e3 = np.cross(u, e2)
    if e3[1] > 0:  # e3 must point to the front (the sternocostal surface)
        e2, e3 = -e2, -e3
    # the AV plane's centre: the aortic valve sits at the front and top of the ventricles' base,
    # between the pulmonary valve in front and the mitral valve behind
    o = geo.av_center + u * 9.0 - e3 * 14.0 * sc + e2 * 4.0
    frame = np.stack([u, e2, e3], axis=1)
    d_av = float(u @ o)
    apex_a = 1.5 * L

    def at(a, p, q):
        return o + u * a + e2 * p + e3 * q

    lv_c = at(4.0, 0.22 * B, -0.04 * B)
    lv = Chamber(
        "LV", lv_c, np.array([apex_a - 4.0, 0.84 * B, 0.84 * B]), frame, 10.0 * sc, u, d_av, 1.0
    )
    rv_c = at(0.3 * L, -0.45 * B, 0.1 * B)
    rv_axes = np.array([0.95 * L, 0.72 * B, 1.0 * B])
    rv = Chamber("RV", rv_c, rv_axes, frame, 4.0 * sc, u, d_av, 1.0)
    # atria on the far side of the AV plane: the left behind, in front of the oesophagus and the
    # spine; the right on the right of the aortic root
    cut_a = d_av - AV_GAP_MM
    eye = np.eye(3)
    la_axes = np.array([36.0, 19.0, 27.0]) * sc
    la_c = at(-0.42 * L, 0.2 * B, -0.3 * B)
    la_c[1] = min(la_c[1], float(geo.spine_y(la_c[2])) - geo.vb_radii[1] - 14 - la_axes[1])
    la = Chamber("LA", la_c, la_axes, eye, WALL_MM["LA"], u, cut_a, -1.0)
    ra_axes = np.array([23.0, 26.0, 30.0]) * sc
    ra_c = geo.av_center + np.array([-30.0, 6.0, -14.0]) * sc
    ra = Chamber("RA", ra_c, ra_axes, eye, WALL_MM["RA"], u, cut_a, -1.0)
    chambers = {"LV": lv, "RV": rv, "LA": la, "RA": ra}
    # outflow tracts: LV cavity to the aortic valve, RV's front to the pulmonary valve
    lvot = resample_curve(
        np.array([at(22.0, 0.05 * B, 0.15 * B), at(6.0, 0.0, 0.12 * B), geo.av_center]), 2.0
    )
    pv = geo.pulmonary[0][0][0]
    rvot = resample_curve(
        np.array([at(0.3 * L, -0.45 * B, 0.45 * B), at(0.0, -0.3 * B, 0.7 * B), pv]), 2.0
    )
    heart = Heart(
        origin=o,
        u=u,
        e2=e2,
        e3=e3,
        chambers=chambers,
        outflow={"LVOT": (lvot, 10.0 * sc), "RVOT": (rvot, 10.5 * sc)},
        orifices={
            "MV": (at(-AV_GAP_MM / 2, 0.3 * B, -0.12 * B), geo.mv_radius),
            "TV": (at(-AV_GAP_MM / 2, -0.5 * B, 0.05 * B), 15.0 * sc),
        },
        lv_base=lv_c - u * 4.0,
    )
    return heart


def _crease(heart: Heart, a: str, b: str, x0: np.ndarray, lift: float, iters: int = 25):
    """A point near ``x0`` that lies ``lift`` mm outside both chambers ``a`` and ``b`` (their
    crease, lifted into its fat), by Gauss-Newton with minimum-norm steps; None if it fails."""
    x = np.asarray(x0, dtype=float).copy()
    eps = 0.25
    for _ in range(iters):
        f = np.array([heart.sd_chamber(a, x)[0], heart.sd_chamber(b, x)[0]]) - lift
        if np.abs(f).max() < 0.05:
            break
        pts = x + np.vstack([np.eye(3) * eps, -np.eye(3) * eps])
        ga = (heart.sd_chamber(a, pts[:3]) - heart.sd_chamber(a, pts[3:])) / (2 * eps)
        gb = (heart.sd_chamber(b, pts[:3]) - heart.sd_chamber(b, pts[3:])) / (2 * eps)
        j = np.stack([ga, gb])
        step = -j.T @ np.linalg.solve(j @ j.T + 1e-6 * np.eye(2), f)
        n = np.linalg.norm(step)
        x = x + (step if n < 5.0 else step * 5.0 / n)
    f = np.array([heart.sd_chamber(a, x)[0], heart.sd_chamber(b, x)[0]]) - lift
    if np.abs(f).max() > 0.5 or np.linalg.norm(x - x0) > 25:
        return None
    return x


def _surface(heart: Heart, names, center: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance (mm) from ``center`` along each unit direction (M, 3) to the surface of the
    union of chambers ``names`` (bisection)."""
    lo, hi = np.zeros(len(dirs)), np.full(len(dirs), 90.0)
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        p = center + dirs * mid[:, None]
        sd = np.min([heart.sd_chamber(n, p) for n in names], axis=0)
        lo, hi = np.where(sd < 0, mid, lo), np.where(sd < 0, hi, mid)
    return lo


def _iv_groove(heart: Heart, lift: float, anterior: bool) -> np.ndarray:
    """The anterior (``anterior``) or posterior interventricular groove from the base towards
    the apex, ``lift`` mm outside both ventricles; beyond the RV's end it follows the LV."""
    u, e2, e3 = heart.u, heart.e2, heart.e3
    c_ax = heart.lv_base
    apex_a = float(_surface(heart, ["LV"], c_ax + u * 5.0, u[None])[0]) + 5.0
    phis = np.linspace(0, np.pi, 90) * (1.0 if anterior else -1.0)
    dirs = np.outer(np.cos(phis), e2) + np.outer(np.sin(phis), e3)
    out, prev = [], None
    for a in np.arange(4.0, apex_a - 2.0, 3.0):
        centre = c_ax + u * a
        ring = centre + dirs * _surface(heart, ["LV"], centre, dirs)[:, None]
        cross = np.nonzero(np.diff(np.sign(heart.sd_chamber("RV", ring))))[0]
        if prev is None and len(cross) == 0:
            continue
        guess = prev + u * 3.0 if prev is not None else ring[cross[0]]
        x = _crease(heart, "LV", "RV", guess, lift) if len(cross) else None
        if x is None:  # past the RV: on the LV's surface, at the groove's last angle
            if prev is None:
                continue
            d = prev - centre
            d = _unit(d - u * (u @ d))
            x = centre + d * (_surface(heart, ["LV"], centre, d[None])[0] + lift)
        out.append(x)
        prev = x
    return np.array(out)


def _av_ring(heart: Heart, lift: float, phis: np.ndarray) -> np.ndarray:
    """Points of the AV groove at angles ``phis`` (rad, from e2 towards e3) round the
    ventricles' base, ``lift`` mm outside it, midway through the AV plane's gap."""
    o, u = heart.origin, heart.u
    dirs = np.outer(np.cos(phis), heart.e2) + np.outer(np.sin(phis), heart.e3)
    r = _surface(heart, ["LV", "RV"], o + u * 1.0, dirs)
    return o - u * (AV_GAP_MM / 2) + dirs * (r + lift)[:, None]


def _phi(heart: Heart, p) -> float:
    d = np.asarray(p) - heart.origin
    return float(np.arctan2(d @ heart.e3, d @ heart.e2))


def build_coronaries(geo, heart: Heart, rng: np.random.Generator):
    """The LAD (from the left main), LCX and RCA along the grooves of ``heart``.

    Args:
        geo: the subject's geometry (its ``subject`` and ``epicardial_fat_mm``).
        heart: the four-chamber heart; its grooves are stored on it.
        rng: the subject's random numbers.

    Returns:
        the arteries' centre lines and their lumen radii (mm).
    """
    s = geo.subject
    sc = s.heart_scale
    lift = max(2.2 * sc + 1.0, 0.5 * (geo.epicardial_fat_mm + SMOOTH_MM / 4))
    aiv = _iv_groove(heart, lift, True)
    piv = _iv_groove(heart, lift, False)
    phi_aiv, phi_piv = _phi(heart, aiv[0]), _phi(heart, piv[0])
    if phi_piv > phi_aiv:
        phi_piv -= 2 * np.pi
    # the AV groove: from the top of the anterior IV groove round the left (LCX) to the crux,
    # and round the right (RCA) from the front of the aortic root to the crux
    left_phis = np.linspace(phi_aiv, phi_piv, 40)
    right_phis = np.linspace(phi_aiv + 0.35, phi_piv + 2 * np.pi, 50)
    ring_l, ring_r = _av_ring(heart, lift, left_phis), _av_ring(heart, lift, right_phis)
    heart.grooves = {"AIV": aiv, "PIV": piv, "AV": np.concatenate([ring_l[::-1], ring_r])}
    a, n, r_av = geo.av_center, geo.av_normal, geo.av_radius
    sinus = a + n * 7.0

    def perp(v):
        v = np.asarray(v, dtype=float)
        return _unit(v - n * (v @ n))

    root_r = r_av + 3.0
    lo_left = sinus + perp([1.0, 0.3, 0.0]) * root_r
    lo_right = sinus + perp([-0.6, -1.0, 0.0]) * root_r
    bif = ring_l[1]
    lm = [lo_left, 0.5 * (lo_left + bif) + heart.e3 * 2.0, bif]
    lad = resample_curve(np.concatenate([np.array(lm), aiv[1:]]), 1.0)
    frac = rng.uniform(0.75, 1.0)
    lcx = resample_curve(ring_l[1 : max(int(frac * len(ring_l)), 4)], 1.0)
    k_piv = max(int(len(piv) * rng.uniform(0.45, 0.65)), 3)
    k0 = int(np.argmin(np.linalg.norm(ring_r[: len(ring_r) // 2] - lo_right, axis=1)))
    rca = resample_curve(np.concatenate([lo_right[None], ring_r[k0 + 1 :], piv[1:k_piv]]), 1.0)
    coronaries = {"LAD": lad, "LCX": lcx, "RCA": rca}
    radius = {}
    for name, c in coronaries.items():
        sl = arc_length(c)
        r0 = 2.2 if name != "LCX" else 1.9
        radius[name] = np.maximum(r0 * (1 - 0.5 * sl / max(sl[-1], 1.0)), 0.9) * sc
    return coronaries, radius


def bone_points(geo) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) on the ribs, costal cartilages, sternum and the vertebral bodies' surface
    near the heart, and the bone's radius (mm) round each (0 on the vertebral surface)."""
    from calcscore.phantom.habitus import sternum_half_width, sternum_y

    hab = geo.habitus
    pts = [b.points for b in hab.ribs + hab.cartilages]
    rad = [np.maximum(b.r_normal, b.r_binormal) for b in hab.ribs + hab.cartilages]
    zs = np.arange(hab.z_bottom, hab.z_top, 3.0)
    for f in np.linspace(-1.0, 1.0, 7):
        xs = geo.body_center[0] + f * sternum_half_width(hab, zs)
        pts.append(np.stack([xs, sternum_y(hab, geo, zs), zs], axis=1))
        rad.append(np.full(len(zs), 7.5))
    zs = np.arange(geo.z_diaphragm - 20, geo.carina[2], 6.0)
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    rx, ry = geo.vb_radii
    for z in zs:
        sy = float(geo.spine_y(z))
        ring = np.stack(
            [geo.spine_x + rx * np.cos(ang), sy + ry * np.sin(ang), np.full_like(ang, z)], axis=1
        )
        pts.append(ring)
        rad.append(np.zeros(len(ang)))
    return np.concatenate(pts), np.concatenate(rad)


def _move(geo, heart: Heart, anchor: np.ndarray, f, t: np.ndarray | None = None) -> None:
    """Scale the heart (its chambers, valves and outflow tracts, the aortic valve) by ``f``
    about ``anchor`` (a number, or (1, f_y, 1) to flatten it front to back), then shift it by
    ``t`` (in place)."""
    s = np.broadcast_to(np.asarray(f, dtype=float), (3,))
    t = np.zeros(3) if t is None else t

    def mv(p):
        return anchor + s * (np.asarray(p) - anchor) + t

    for c in heart.chambers.values():
        p0 = mv(c.cut_n * c.cut_d)
        n = _unit(c.cut_n / s)
        c.cut_n, c.cut_d = n, float(n @ p0)
        c.center = mv(c.center)
        u_, sig, _ = np.linalg.svd(np.diag(s) @ c.rot @ np.diag(c.axes))
        c.rot, c.axes = u_, sig
    heart.fit_scale *= float(s.min()) if s[0] == s[1] else 1.0
    heart.fit_squash *= float(s[1] / s[0])
    heart.fit_shift_mm += float(t[1])
    heart.origin, heart.lv_base = mv(heart.origin), mv(heart.lv_base)
    heart.orifices = {k: (mv(c), r * float(s[0])) for k, (c, r) in heart.orifices.items()}
    heart.outflow = {k: (mv(p), r * float(s[0])) for k, (p, r) in heart.outflow.items()}
    geo.av_center = mv(geo.av_center)  # (heart_center, which centres the field of view, stays)


def _shift_away(geo, heart: Heart, pts, need, front, pen) -> bool:
    """Shift the heart (in place) across the body, away from the point behind it that presses
    on it most (at most 4 mm), if that brings no bone in front of it closer than allowed;
    True if it moved."""
    k = int(np.argmax(np.where(front, -np.inf, pen)))
    d = heart.origin - pts[k]
    d[2] = 0.0
    t = _unit(d) * min(float(pen[k]), 4.0)
    trial, av = copy.deepcopy(heart), geo.av_center.copy()
    _move(geo, trial, np.zeros(3), 1.0, t)
    before = max(float(pen[front].max()), 0.0)
    if float((need - trial.sd_heart(pts))[front].max()) > before:
        geo.av_center = av
        return False
    heart.__dict__.update(trial.__dict__)
    return True


def _fit_heart(geo, heart: Heart, extra=None) -> None:
    """Keep the heart and its epicardial fat clear of every bone and of ``extra`` (points (N, 3)
    and radii (N,): the descending aorta's wall): move it back where there is room in front of
    what lies behind it, away from what presses on it from behind where there is room in front
    (:func:`_shift_away`), then flatten it front to back (a shallow chest), then shrink it."""
    pts, r = bone_points(geo)
    if extra is not None:
        pts, r = np.concatenate([pts, extra[0]]), np.concatenate([r, extra[1]])
    need = geo.epicardial_fat_mm + 2.0 + r
    front = pts[:, 1] < geo.av_center[1]
    for _ in range(30):
        # (the chambers anew each time: _shift_away replaces them)
        la, ch = heart.chambers["LA"], list(heart.chambers.values())
        pen = need - heart.sd_heart(pts)
        pen_f, pen_b = float(pen[front].max()), float(pen[~front].max())
        if max(pen_f, pen_b) <= 0:
            break
        back = np.array([0.0, float(la.center[1] + la.axes.max()), 0.0])
        if pen_f > 0 and pen_b < -2:
            _move(geo, heart, back, 1.0, np.array([0.0, min(pen_f, -pen_b - 1, 4.0), 0.0]))
        elif pen_b > 0 and _shift_away(geo, heart, pts, need, front, pen):
            continue
        elif heart.fit_squash > 0.7:
            # flattened front to back (towards its back, or its front if pressed from behind),
            # the heart widens and lengthens into the lungs
            y = back[1] if pen_f > 0 else min(c.center[1] - c.axes.max() for c in ch)
            _move(
                geo, heart, np.array([heart.origin[0], y, heart.origin[2]]), (SPREAD, 0.95, SPREAD)
            )
        else:
            _move(geo, heart, geo.av_center.copy(), 0.96)


def heart_centroid(heart: Heart) -> np.ndarray:
    """The centre (x, y, z mm) of the chambers' union, on a 3 mm grid."""
    ch = list(heart.chambers.values())
    lo = np.min([c.center - c.axes.max() for c in ch], axis=0)
    hi = np.max([c.center + c.axes.max() for c in ch], axis=0)
    x, y, z = np.meshgrid(*(np.arange(lo[k], hi[k], 3.0) for k in range(3)), indexing="ij")
    inside = _union([c.sd_outer(x, y, z) for c in ch]) < 0
    return np.array([x[inside].mean(), y[inside].mean(), z[inside].mean()])


def _bounds(heart: Heart, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """Corners (x, y, z mm) of a box that holds the chambers' union grown by ``pad`` mm, found
    on a 4 mm grid (the ellipsoids' cut-off halves left out)."""
    ch = list(heart.chambers.values())
    lo = np.min([c.center - c.axes.max() for c in ch], axis=0) - pad
    hi = np.max([c.center + c.axes.max() for c in ch], axis=0) + pad
    x, y, z = np.meshgrid(*(np.arange(lo[k], hi[k] + 4.0, 4.0) for k in range(3)), indexing="ij")
    inside = _union([c.sd_outer(x, y, z) for c in ch]) < pad + 4.0
    pts = np.stack([x[inside], y[inside], z[inside]], axis=1)
    return pts.min(axis=0) - 4.0, pts.max(axis=0) + 4.0
