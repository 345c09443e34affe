"""Subjects and their chest anatomy, with the HU of non-contrast CT.

A :class:`Subject` holds the drawn parameters (body and heart size, position and orientation,
aortic tortuosity, age). :func:`build_geometry` turns it into the curves and frames in patient
LPS millimetres (x to the left, y to the back, z to the head) that both the anatomy and the
calcifications use; :func:`render_anatomy` paints the tissues on a (working) grid.

The aortic valve centre is at z = ``subject.z_av_mm``; the other levels are set relative to it:
lung apex about 150 mm above, carina about 50 mm above, the arch top 70-95 mm above, the heart
apex and diaphragm about 90-110 mm below.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from calcscore.phantom._draw import (
    GridSpec,
    arc_length,
    resample_curve,
    segments_at,
)
from calcscore.phantom.subject import Subject, draw_subject
from calcscore.phantom.tissue import HU, _sternum_y, fat_thickness, muscle_thickness

if TYPE_CHECKING:
    from calcscore.phantom.habitus import Habitus
    from calcscore.phantom.heart import Heart

log = logging.getLogger(__name__)

__all__ = [
    "HU",
    "Geometry",
    "Subject",
    "_sternum_y",
    "atria",
    "build_geometry",
    "draw_subject",
    "fat_thickness",
    "muscle_thickness",
    "render_anatomy",
]


@dataclass
class Geometry:
    """Curves and frames of one subject in LPS mm (x, y, z). Read-only after building."""

    subject: Subject
    body_center: np.ndarray  # (x, y)
    spine_x: float
    spine_y0: float
    vb_radii: tuple[float, float]
    heart_center: np.ndarray
    heart_axes: tuple[float, float]  # (half-length along u, radius across)
    heart_u: np.ndarray  # base -> apex
    heart_v: np.ndarray
    heart_w: np.ndarray
    epicardial_fat_mm: float
    av_center: np.ndarray
    av_normal: np.ndarray
    av_radius: float
    mv_center: np.ndarray
    mv_normal: np.ndarray
    mv_radius: float
    aorta: np.ndarray  # (N, 3) centreline
    aorta_radius: np.ndarray  # (N,)
    aorta_segment: np.ndarray  # (N,) 0 root, 1 ascending, 2 arch, 3 descending
    coronaries: dict[str, np.ndarray]  # "LAD" (incl. left main), "LCX", "RCA"
    coronary_radius: dict[str, np.ndarray]
    pulmonary: list[tuple[np.ndarray, float]]
    svc: np.ndarray
    trachea: np.ndarray
    bronchi: list[np.ndarray]
    carina: np.ndarray
    esophagus: np.ndarray
    branches: list[np.ndarray]
    z_apex: float
    z_diaphragm: float
    z_ster_top: float
    z_ster_bottom: float
    rib_pitch_mm: float
    rib_drop_mm: float
    rib_z0: float
    lung_vessels: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)
    #: the realistic anatomy's body and skeleton (:class:`calcscore.phantom.habitus.Habitus`);
    #: None for the first generator's cartoon anatomy
    habitus: Habitus | None = None
    #: the realistic anatomy's four-chamber heart (:class:`calcscore.phantom.heart.Heart`), whose
    #: coronary arteries, aorta, arch branches and SVC replace the first generator's; None for v1
    heart: Heart | None = None

    # ---- derived positions ------------------------------------------------------------
    def spine_y(self, z) -> np.ndarray:
        """Vertebral body centre y (mm) at height z: thoracic kyphosis bows the spine backwards."""
        zm = self.subject.z_av_mm
        return self.spine_y0 + self.subject.kyphosis_mm * (1 - ((np.asarray(z) - zm) / 180.0) ** 2)

    def heart_point(self, t: float, phi: float, lift_mm: float = 0.0) -> np.ndarray:
        """A point on the (myocardial) heart ellipsoid: t in [-1, 1] base -> apex, angle phi.

        Args:
            t: position along the long axis ``heart_u``, -1 at the base, 1 at the apex.
            phi: angle (rad) round the long axis, from ``heart_v`` towards ``heart_w``.
            lift_mm: how far (mm) outside the surface (the epicardium, where the coronary
                arteries run).

        Returns:
            the point (x, y, z) mm.
        """
        L, B = self.heart_axes
        rad = B * np.sqrt(max(1.0 - t * t, 0.0)) + lift_mm
        return (
            self.heart_center
            + self.heart_u * (L + lift_mm * abs(t)) * t
            + (self.heart_v * np.cos(phi) + self.heart_w * np.sin(phi)) * rad
        )

    def heart_angle(self, direction_xyz) -> float:
        d = np.asarray(direction_xyz, dtype=float)
        return float(np.arctan2(d @ self.heart_w, d @ self.heart_v))

    @property
    def homogeneous_roi(self) -> tuple[np.ndarray, float]:
        """Centre (x, y, z mm) and radius (mm) of a sphere of homogeneous blood (for noise SD)."""
        L, B = self.heart_axes
        if self.heart is not None:  # in the left ventricle's cavity, towards the apex
            return self.heart.chambers["LV"].center + self.heart_u * 0.35 * L, 0.25 * B
        return self.heart_center + self.heart_u * 0.3 * L, 0.25 * B


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _unwrap_path(angles: list[float]) -> np.ndarray:
    out = [angles[0]]
    for a in angles[1:]:
        d = (a - out[-1] + np.pi) % (2 * np.pi) - np.pi
        out.append(out[-1] + d)
    return np.array(out)


#: the fat plane (mm) between the descending aorta's wall and the front of the vertebral body
AORTA_SPINE_GAP_MM = 3.0


def _clear_of_spine(dx: float, vb_r: tuple[float, float], clearance: float) -> float:
    """How far in front of the vertebral body centre (mm, towards anterior) a tube centre that is
    ``dx`` mm to the side of it must lie to keep ``clearance`` mm from the body's ellipse
    (radii ``vb_r``): the ellipse grown by ``clearance`` (exact straight in front, approximate to
    the sides; the test of the phantom measures the gap on the drawn tube)."""
    rx, ry = vb_r[0] + clearance, vb_r[1] + clearance
    if abs(dx) >= rx:
        return -np.inf
    return float(ry * np.sqrt(1 - (dx / rx) ** 2))


#: The anatomies: "v1" the first generator's (constant body section, ribs as a periodic band, a
#: T-shaped spine), "v2" the realistic one (:mod:`calcscore.phantom.habitus`).
ANATOMIES = ("v1", "v2")


def check_anatomy(anatomy: str) -> str:
    if anatomy not in ANATOMIES:
        raise ValueError(f"`anatomy` must be one of {', '.join(ANATOMIES)}, got {anatomy=}")
    return anatomy


def build_geometry(subject: Subject, anatomy: str = "v1") -> Geometry:
    """Curves and frames of the chest of one subject (deterministic given the subject); with
    ``anatomy="v2"`` also its body habitus and skeleton, and the four-chamber heart, coronary
    arteries in their grooves and curved aorta of :mod:`calcscore.phantom.heart` in place of the
    first generator's (the same subject, body size, airways and lung vessels)."""
    check_anatomy(anatomy)
    s = subject
    if anatomy == "v2":  # a deeper chest in front, the back and the spine where they were
        from calcscore.phantom.habitus import deeper_chest

        s = deeper_chest(s)
    rng = np.random.default_rng(s.seed)
    bx, by = s.body_center_xy_mm
    zav = s.z_av_mm
    # spine: vertebral body behind the posterior mediastinum
    vb_r = (17.0 + 3 * s.heart_scale, 14.0 + 2 * s.heart_scale)
    # skin, fat, paraspinal muscle and the neural arch behind the vertebral body centre
    # (from the drawn subject's back: v2's deeper chest leaves the back and the spine in place)
    y_back = subject.body_center_xy_mm[1] + subject.body_half_depth_mm
    spine_y0 = y_back - (2 + 0.75 * s.fat_mm + 48 + vb_r[1]) - s.kyphosis_mm
    spine_x = bx + rng.normal(0, 2)

    # heart: ellipsoid with long axis u from base (posterior-superior-right) to apex
    az, el = np.radians(s.heart_azimuth_deg), np.radians(s.heart_elevation_deg)
    u = _unit([np.cos(el) * np.sin(az), -np.cos(el) * np.cos(az), -np.sin(el)])
    w = _unit(np.cross(u, [0.0, 0.0, 1.0]))
    v = np.cross(w, u)
    L = 55.0 * s.heart_scale
    B = 38.0 * s.heart_scale
    epi = float(np.clip(2 + 0.15 * s.fat_mm + rng.normal(0, 1.0), 2.0, 8.0))
    sternum_inner_y = _sternum_y(s) + 5
    hc = np.array(
        [bx + 18 + s.heart_center_offset_mm[0], 0.0, zav - 38 + s.heart_center_offset_mm[2]]
    )
    # anterior-most point of the pericardial sac just behind the sternum
    ext_y = np.sqrt((L * u[1]) ** 2 + (B**2) * (1 - u[1] ** 2)) + epi + 2
    hc[1] = sternum_inner_y + ext_y + 4 + abs(s.heart_center_offset_mm[1])
    # keep the heart in front of the spine and the descending aorta
    max_y = spine_y0 - vb_r[1] - 26 - np.sqrt((L * u[1]) ** 2 + (B**2) * (1 - u[1] ** 2)) * 0.55
    hc[1] = min(hc[1], max_y)

    t_av = -0.42

    def hp(t, phi, lift=0.0):
        rad = B * np.sqrt(max(1.0 - t * t, 0.0)) + lift
        return hc + u * (L + lift * abs(t)) * t + (v * np.cos(phi) + w * np.sin(phi)) * rad

    def ang(d):
        d = np.asarray(d, dtype=float)
        return float(np.arctan2(d @ w, d @ v))

    ant, post = np.array([0, -1.0, 0]), np.array([0, 1.0, 0])
    left, right = np.array([1.0, 0, 0]), np.array([-1.0, 0, 0])
    sup, inf = np.array([0, 0, 1.0]), np.array([0, 0, -1.0])

    # aortic valve: at the base, medial and anterior-right of the mitral valve
    av_center = hc + u * L * (-0.62) + _unit(ant + 0.6 * right) * 0.12 * B
    av_normal = _unit(-u + 0.9 * sup + 0.2 * ant + 0.15 * right)
    av_radius = 11.5 * s.aorta_scale * (0.9 + 0.1 * s.heart_scale)
    zshift = zav - av_center[2]  # put the valve exactly at z_av
    hc = hc + np.array([0, 0, zshift])
    av_center = av_center + np.array([0, 0, zshift])

    mv_center = hc + u * L * (-0.46) + _unit(post + 0.8 * left) * 0.4 * B
    mv_normal = _unit(u + 0.2 * ant)
    mv_radius = 14.5 * s.heart_scale

    # ---- aorta: root, ascending, arch, descending along the spine -------------------------
    r_root = 16.0 * s.aorta_scale
    z_top = zav + s.arch_height_mm
    r_arch = 12.5 * s.aorta_scale
    asc_top = np.array([av_center[0] - 8 - 6 * s.aortic_tortuosity, av_center[1] - 6, z_top - 18])
    d_top_y = spine_y0 - vb_r[1] - 0.0
    desc_x = spine_x + vb_r[0] * 0.75 + 11 * s.aorta_scale
    desc_top = np.array([desc_x, d_top_y - 4, z_top - 22])
    arch_mid = np.array([(asc_top[0] + desc_top[0]) / 2 + 4, (asc_top[1] + desc_top[1]) / 2, z_top])
    tort = s.aortic_tortuosity
    ctrl = [
        av_center + av_normal * 2.0,
        av_center + av_normal * 18.0,
        av_center + av_normal * 34 + np.array([-4 * tort, -3 * tort, 0]),
        asc_top,
        arch_mid + np.array([0, -8, -2]) * 0 + np.array([-2, -6, 0]),
        arch_mid + np.array([6, 12, 0]),
        desc_top,
    ]
    z_bottom = zav - 230
    n_desc = 8
    phase = rng.uniform(0, 2 * np.pi)
    for k in range(1, n_desc + 1):
        zz = desc_top[2] - k * (desc_top[2] - z_bottom) / n_desc
        sy = float(spine_y0 + s.kyphosis_mm * (1 - ((zz - zav) / 180.0) ** 2))
        wig = tort * 10 * np.sin(phase + zz / 45.0)
        # the descending aorta drifts towards the midline as it descends
        xx = desc_x + wig - (desc_top[2] - zz) * 0.04
        yy = sy - vb_r[1] - 6 * s.aorta_scale + 2 * tort
        # ... but stays in front of the vertebral body, with a fat plane between (it must not run
        # into the bone: calcium on its back wall would be painted onto the vertebral cortex)
        yy = min(yy, sy - _clear_of_spine(xx - spine_x, vb_r, r_arch + AORTA_SPINE_GAP_MM))
        ctrl.append(np.array([xx, yy, zz]))
    aorta = resample_curve(np.array(ctrl), 1.0)
    s_len = arc_length(aorta)
    # segments by position along the curve
    marks = [av_center + av_normal * 20.0, asc_top, desc_top]
    (i_asc, i_arch0, i_arch1), seg = segments_at(aorta, marks)
    radius = np.interp(
        s_len,
        [0, s_len[i_asc], s_len[i_arch0], s_len[i_arch1], s_len[-1]],
        [r_root, 15.0 * s.aorta_scale, 13.5 * s.aorta_scale, r_arch, 10.5 * s.aorta_scale],
    )
    radius[: i_asc // 2 + 1] = np.maximum(radius[: i_asc // 2 + 1], av_radius + 2)

    # ---- coronary arteries -----------------------------------------------------------------
    sinus = av_center + av_normal * 7.0
    root_r = av_radius + 3.0
    lift = epi * 0.45
    phi_aiv = ang(ant + 0.45 * left + 0.2 * sup) + rng.normal(0, 0.12)
    phi_lm = ang(left + 0.6 * ant) + rng.normal(0, 0.1)
    bif = hp(t_av, phi_lm, lift)
    lo_left = sinus + _unit(left + 0.5 * post - 0.0 * ant) * root_r
    lm = [lo_left, 0.5 * (lo_left + bif) + np.array([0, -2, 1]), bif]
    t_lad = np.linspace(t_av, 0.97, 14)
    phis_lad = phi_lm + (phi_aiv - phi_lm) * np.clip((t_lad - t_av) / 0.35, 0, 1)
    lad_pts = [hp(t, p, lift) for t, p in zip(t_lad[1:], phis_lad[1:])]
    lad_pts.append(hp(0.99, phi_aiv + 0.3, lift) + u * 3)
    lad = resample_curve(np.array(lm + lad_pts), 1.0)

    lcx_ang = _unwrap_path([phi_lm, ang(left + 0.3 * post), ang(post + 0.5 * left + 0.3 * inf)])
    n_lcx = 12
    frac_lcx = rng.uniform(0.75, 1.0)
    phis = np.interp(np.linspace(0, frac_lcx * 2, n_lcx), [0, 1, 2], lcx_ang)
    ts = t_av + np.linspace(0, 1, n_lcx) ** 2 * rng.uniform(0.0, 0.15)
    lcx = resample_curve(np.array([bif] + [hp(t, p, lift) for t, p in zip(ts[1:], phis[1:])]), 1.0)

    lo_right = sinus + _unit(ant + 0.8 * right) * root_r
    rca_ang = _unwrap_path(
        [
            ang(ant + 1.0 * right),
            ang(right + 0.2 * ant),
            ang(right + 0.8 * post),
            ang(post + 0.6 * inf + 0.2 * right),
        ]
    )
    phis = np.interp(np.linspace(0, 3, 16), [0, 1, 2, 3], rca_ang)
    rca_pts = [lo_right] + [hp(t_av + 0.02, p, lift) for p in phis]
    phi_piv = rca_ang[-1] + 0.15
    for t in np.linspace(t_av + 0.1, 0.55, 5):
        rca_pts.append(hp(t, phi_piv, lift))
    rca = resample_curve(np.array(rca_pts), 1.0)
    coronaries = {"LAD": lad, "LCX": lcx, "RCA": rca}
    cor_r = {}
    for name, c in coronaries.items():
        sl = arc_length(c)
        r0 = 2.2 if name != "LCX" else 1.9
        cor_r[name] = np.maximum(r0 * (1 - 0.5 * sl / max(sl[-1], 1.0)), 0.9) * s.heart_scale

    # ---- pulmonary artery, SVC, airways, oesophagus -----------------------------------------
    pa_start = av_center + _unit(ant + 0.7 * left) * (av_radius + 12) + np.array([0, 0, -4])
    pa_bif = np.array([av_center[0] + 12, av_center[1] + 28, zav + 38])
    lpa_end = pa_bif + np.array([48, 22, -12])
    rpa_end = np.array([bx - 62, pa_bif[1] + 4, zav + 32])
    pulmonary = [
        (
            resample_curve(np.array([pa_start, pa_start + [4, 10, 18], pa_bif]), 2.0),
            13.0 * s.aorta_scale,
        ),
        (
            resample_curve(np.array([pa_bif, pa_bif + [26, 6, 4], lpa_end]), 2.0),
            10.0 * s.aorta_scale,
        ),
        (
            resample_curve(np.array([pa_bif, pa_bif + [-30, 0, -3], rpa_end]), 2.0),
            10.0 * s.aorta_scale,
        ),
    ]
    z_scan_top = zav + 175
    svc_x = aorta[i_asc, 0] - radius[i_asc] - 10
    svc = resample_curve(
        np.array(
            [
                [svc_x - 4, av_center[1] + 2, z_scan_top],
                [svc_x, av_center[1] + 4, zav + 30],
                [svc_x + 4, av_center[1] + 8, zav - 5],
            ]
        ),
        2.0,
    )
    carina = np.array([spine_x - 2, float(spine_y0) - vb_r[1] - 26 + s.kyphosis_mm, zav + 50])
    trachea = resample_curve(np.array([[spine_x - 1, carina[1] - 4, z_scan_top], carina]), 2.0)
    bronchi = [
        resample_curve(np.array([carina, carina + [24, 6, -20], carina + [48, 14, -42]]), 2.0),
        resample_curve(np.array([carina, carina + [-20, 4, -12], carina + [-36, 8, -26]]), 2.0),
    ]
    eso_y = float(spine_y0) - vb_r[1] - 8 + s.kyphosis_mm
    esophagus = resample_curve(
        np.array(
            [
                [spine_x + 2, eso_y - 2, z_scan_top],
                [spine_x + 8, eso_y, zav],
                [spine_x + 16, eso_y - 10, zav - 120],
            ]
        ),
        3.0,
    )
    branches = []
    for k, dx in enumerate((-14.0, -2.0, 12.0)):
        p0 = aorta[i_arch0 + (i_arch1 - i_arch0) * (k + 1) // 4]
        branches.append(
            resample_curve(np.array([p0, p0 + [dx * 0.7, 4, 30], p0 + [dx, 8, 120]]), 3.0)
        )

    z_diaph = float(hc[2] - np.sqrt((L * u[2]) ** 2 + B**2 * (1 - u[2] ** 2)) + 4)
    geo = Geometry(
        subject=s,
        body_center=np.array([bx, by]),
        spine_x=float(spine_x),
        spine_y0=float(spine_y0),
        vb_radii=vb_r,
        heart_center=hc,
        heart_axes=(L, B),
        heart_u=u,
        heart_v=v,
        heart_w=w,
        epicardial_fat_mm=epi,
        av_center=av_center,
        av_normal=av_normal,
        av_radius=float(av_radius),
        mv_center=mv_center + np.array([0, 0, zshift]),
        mv_normal=mv_normal,
        mv_radius=float(mv_radius),
        aorta=aorta,
        aorta_radius=radius.astype(float),
        aorta_segment=seg,
        coronaries=coronaries,
        coronary_radius=cor_r,
        pulmonary=pulmonary,
        svc=svc,
        trachea=trachea,
        bronchi=bronchi,
        carina=carina,
        esophagus=esophagus,
        branches=branches,
        z_apex=zav + 150 + rng.uniform(-10, 10),
        z_diaphragm=z_diaph,
        z_ster_top=z_top + 12,
        z_ster_bottom=z_diaph - 10,
        rib_pitch_mm=float(rng.uniform(24, 30)),
        rib_drop_mm=float(rng.uniform(60, 95)),
        rib_z0=float(rng.uniform(0, 30)),
    )
    from calcscore.phantom.render import lung_vessel_tree

    geo.lung_vessels = lung_vessel_tree(geo, rng)
    if anatomy == "v2":
        from calcscore.phantom.habitus import build_habitus

        geo.habitus = build_habitus(geo)
        from calcscore.phantom.aorta import build_v2_heart_and_aorta

        build_v2_heart_and_aorta(geo)
    return geo


def atria(geo: Geometry) -> list[tuple[np.ndarray, np.ndarray]]:
    """Centres and (x, y, z) semi-axes (mm) of the left and right atrium."""
    s = geo.subject
    sc = s.heart_scale
    la = geo.mv_center - geo.heart_u * 12 + np.array([0.0, 12.0, 6.0])
    la_axes = np.array([26.0, 16.0, 19.0]) * sc
    # keep the left atrium in front of the oesophagus and the spine
    la[1] = min(la[1], float(geo.spine_y(la[2])) - geo.vb_radii[1] - 14 - la_axes[1])
    ra = geo.av_center + np.array([-36.0, 4.0, -16.0]) * sc
    ra_axes = np.array([21.0, 23.0, 27.0]) * sc
    return [(la, la_axes), (ra, ra_axes)]


def render_anatomy(geo: Geometry, grid: GridSpec) -> np.ndarray:
    """Paint the tissues of a subject on ``grid``: HU before blur and noise, float32 (z, y, x);
    the realistic anatomy where ``geo`` has a habitus, else the first generator's."""
    if geo.habitus is not None:
        from calcscore.phantom.torso import render_anatomy_v2

        return render_anatomy_v2(geo, grid)
    from calcscore.phantom.render import render_anatomy_v1

    return render_anatomy_v1(geo, grid)


def heart_section_fraction(geo: Geometry) -> float:
    """The pericardial sac's share of the body's area on the axial slice through the heart's
    centre, 1 mm pixels (the sac: the chambers' union grown by the epicardial fat and 1.5 mm of
    pericardium; the body: HU above -400, holes filled, the largest piece). Real non-contrast
    chest CT: 13.4 % (lungdx-a0001-b), 14.7 % (lidc-idri-0001). Needs the realistic anatomy."""
    from scipy import ndimage

    if geo.heart is None:
        raise ValueError("heart_section_fraction needs the realistic anatomy (a v2 heart)")
    z = float(geo.heart_center[2])
    bx, by = geo.body_center
    grid = GridSpec((1, 440, 520), (1.0, 1.0, 1.0), (z, by - 220.0, bx - 260.0))
    hu = render_anatomy(geo, grid)[0]
    lab, n = ndimage.label(ndimage.binary_fill_holes(hu > -400))
    body = lab == 1 + int(np.argmax(ndimage.sum(np.ones_like(hu), lab, range(1, n + 1))))
    y, x = np.meshgrid(grid.axis_mm(1), grid.axis_mm(2), indexing="ij")
    p = np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], axis=1)
    sac = (geo.heart.sd_heart(p) < geo.epicardial_fat_mm + 1.5).reshape(x.shape)
    return float((sac & body).sum() / body.sum())
