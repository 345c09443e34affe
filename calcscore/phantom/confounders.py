"""Dense objects that are never labelled calcium (confounders): lymph nodes, cartilage,
osteophytes, sternal wires, a pacemaker lead, and the calcifications of the costal cartilages.
They are drawn first, as background, so that a network learns they are not coronary, aortic or
valve calcium. Part of :mod:`calcscore.phantom.calcification`.
"""

from __future__ import annotations

import numpy as np

from calcscore.phantom._draw import resample_curve
from calcscore.phantom.anatomy import Geometry, _sternum_y, fat_thickness, muscle_thickness
from calcscore.phantom.calcification import METAL_HU, Lesion, _frame


def _beside_aorta(geo: Geometry, c: np.ndarray, gap_mm: float) -> np.ndarray:
    """``c`` moved straight away from the aorta's centreline until it lies ``gap_mm`` outside
    the lumen (unchanged where it already does)."""
    d = np.linalg.norm(geo.aorta - c, axis=1) - geo.aorta_radius
    i = int(np.argmin(d))
    if d[i] >= gap_mm:
        return c
    away = c - geo.aorta[i]
    away = away / max(float(np.linalg.norm(away)), 1e-6)
    return geo.aorta[i] + away * (geo.aorta_radius[i] + gap_mm)


def confounders(geo: Geometry, rng, *, age: float) -> list[Lesion]:
    """Unlabelled dense objects: lymph nodes, cartilage, osteophytes, sternal wires, a pacemaker lead.

    Args:
        geo: the subject's geometry; with a habitus (realistic anatomy) the costal cartilage
            calcifications are those of :func:`cartilage_calcifications`.
        rng: seed or numpy Generator.
        age: the subject's age (years); costal cartilage calcification is likelier with age.

    Returns:
        the confounders, all with label 0.
    """
    rng = np.random.default_rng(rng)
    s = geo.subject
    eye = np.eye(3)
    out: list[Lesion] = []
    if rng.random() < 0.35:  # calcified mediastinal / hilar lymph nodes
        sites = [
            geo.carina + np.array([2, 10, -20]),
            geo.carina + np.array([-18, -6, 24]),
            geo.carina + np.array([44, 16, -36]),
            geo.carina + np.array([-38, 10, -24]),
        ]
        for k in rng.choice(len(sites), size=int(rng.integers(1, 4)), replace=False):
            c = sites[k] + rng.normal(0, 3, 3)
            if geo.heart is not None:  # the realistic aorta: the node beside it, not in it
                c = _beside_aorta(geo, c, 12.0)
            for _ in range(int(rng.integers(1, 3))):
                out.append(
                    Lesion(
                        0,
                        "lymph_node",
                        tuple(c + rng.normal(0, 1.5, 3)),
                        tuple(rng.uniform(2.0, 5.0, 3)),
                        eye,
                        float(rng.uniform(250, 850)),
                    )
                )
    n_before = len(out)
    if rng.random() < 0.25 + (age - 55) / 40:  # costal cartilage calcification
        for _ in range(int(rng.integers(2, 9))):
            side = rng.choice([-1.0, 1.0])
            th = np.pi - side * rng.uniform(0.25, 0.7)  # front, off the midline
            offset = geo.rib_drop_mm * (1 - np.cos(th)) / 2
            k = int(rng.integers(-2, 4))
            z = (
                geo.rib_z0
                - offset
                + geo.rib_pitch_mm
                * (np.floor((s.z_av_mm + offset - geo.rib_z0) / geo.rib_pitch_mm) + k)
                + 5.5
            )
            p = 2.6
            rs = (
                (abs(np.sin(th)) / s.body_half_width_mm) ** p
                + (abs(np.cos(th)) / s.body_half_depth_mm) ** p
            ) ** (-1 / p)
            rho = rs - (2 + fat_thickness(s, th) + muscle_thickness(s, th) + 4)
            c = np.array(
                [geo.body_center[0] + rho * np.sin(th), geo.body_center[1] + rho * np.cos(th), z]
            )
            out.append(
                Lesion(
                    0,
                    "costal_cartilage",
                    tuple(c),
                    tuple(rng.uniform(0.8, 2.8, 3)),
                    eye,
                    float(rng.uniform(200, 600)),
                )
            )
    if geo.habitus is not None:
        # the realistic anatomy puts them on its own costal cartilages, from a stream of their
        # own: the draws above are spent as before, so every other confounder is the same
        out = out[:n_before] + cartilage_calcifications(
            geo, np.random.default_rng([geo.subject.seed, 29]), age=age
        )
    if rng.random() < 0.25:  # calcified granulomas in the lungs
        peripheral = [seg for seg in geo.lung_vessels if seg[2] < 1.6]
        for k in rng.choice(
            len(peripheral), size=min(int(rng.integers(1, 4)), len(peripheral)), replace=False
        ):
            c = peripheral[k][1] + rng.normal(0, 2.0, 3)
            out.append(
                Lesion(
                    0,
                    "lung_granuloma",
                    tuple(c),
                    tuple(rng.uniform(1.0, 3.0, 3)),
                    eye,
                    float(rng.uniform(300, 900)),
                )
            )
    if rng.random() < 0.35:  # osteophytes at the left anterior vertebral margin, next to the aorta
        rx, ry = geo.vb_radii
        for _ in range(int(rng.integers(1, 4))):
            kz = int(rng.integers(-5, 2))
            z = geo.rib_z0 - 3.0 + 26.0 * (np.floor((s.z_av_mm - geo.rib_z0) / 26.0) + kz) + 21.0
            y = float(geo.spine_y(z)) - ry * 0.75
            c = np.array([geo.spine_x + rx * 0.72, y, z])
            les = Lesion(
                0,
                "osteophyte",
                tuple(c),
                (rng.uniform(2.5, 5.0), rng.uniform(2.0, 3.5), rng.uniform(3.0, 6.0)),
                eye,
                float(rng.uniform(500, 950)),
            )
            # the realistic anatomy: one osteophyte per vertebral margin (two drawn at the same
            # level add up to metal's HU on the cortex); the first generator keeps both
            if geo.heart is None or all(o.center_mm != les.center_mm for o in out):
                out.append(les)
    if rng.random() < 0.07:  # sternal wires after sternotomy
        ys = _sternum_y(s)
        bx = geo.body_center[0]
        for z in np.linspace(geo.z_ster_bottom + 15, geo.z_ster_top - 10, int(rng.integers(4, 7))):
            if geo.habitus is not None:  # the realistic sternum tilts back at the top
                from calcscore.phantom.habitus import sternum_y

                ys = float(sternum_y(geo.habitus, geo, z))
            a = np.linspace(0, 2 * np.pi, 40)
            loop = np.stack(
                [bx + 17 * np.sin(a), ys + 9 * np.cos(a), z + 0.8 * np.sin(2 * a)], axis=1
            )
            out.append(
                Lesion(
                    0,
                    "sternal_wire",
                    (bx, ys, float(z)),
                    (0.6, 0.6, 0.6),
                    eye,
                    METAL_HU,
                    points=loop,
                )
            )
    if rng.random() < 0.05:  # pacemaker lead: left subclavian -> SVC -> right atrium -> RV apex
        s0 = geo.svc[0]
        apex = geo.heart_point(0.8, geo.heart_angle([-0.3, -1.0, 0.0]), -9.0)
        ra = geo.svc[-1] + np.array([-6, 2, -14])
        ctrl = np.array(
            [
                [geo.body_center[0] + 75, _sternum_y(s) + 25, s.z_av_mm + 170],
                [geo.body_center[0] + 20, _sternum_y(s) + 40, s.z_av_mm + 150],
                s0 + np.array([0, 0, -20]),
                geo.svc[len(geo.svc) // 2],
                ra,
                0.5 * (ra + apex) + np.array([0, -10, 0]),
                apex,
            ]
        )
        lead = resample_curve(ctrl, 1.5)
        out.append(
            Lesion(
                0,
                "pacemaker_lead",
                tuple(lead[len(lead) // 2]),
                (1.0, 1.0, 1.0),
                eye,
                2600.0,
                points=lead,
            )
        )
        out.append(
            Lesion(
                0,
                "pacemaker_lead",
                tuple(apex),
                (1.6, 1.6, 4.0),
                _frame(lead[-1] - lead[-4], np.array([0.0, 0.0, 1.0])),
                METAL_HU,
            )
        )
    return out


def cartilage_calcifications(geo: Geometry, rng, *, age: float) -> list[Lesion]:
    """Calcifications of the realistic anatomy's costal cartilages: more and denser with age,
    most often in the first cartilage and at the costochondral junctions (never labelled).

    Args:
        geo: the subject's geometry; it must have a habitus (the realistic anatomy).
        rng: seed or numpy Generator.
        age: the subject's age (years).

    Returns:
        the calcifications (label 0), often none.
    """
    hab = geo.habitus
    out: list[Lesion] = []
    if rng.random() > np.clip(0.3 + (age - 55) / 25, 0.2, 0.95):
        return out
    assert hab is not None, "cartilage_calcifications needs the realistic anatomy (a habitus)"
    carts = hab.cartilages
    w = np.array([3.0 if c.name.startswith("cartilage 1 ") else 1.0 for c in carts])
    n = int(min(1 + rng.poisson(max(age - 50, 0) / 3.5), 24))
    for k in rng.choice(len(carts), size=n, p=w / w.sum()):
        cart = carts[k]
        i = int(len(cart.points) * (rng.uniform(0, 0.2) if rng.random() < 0.35 else rng.random()))
        i = min(i, len(cart.points) - 2)
        tang = cart.points[i + 1] - cart.points[i]
        across = min(float(cart.r_normal[i]), float(cart.r_binormal[i]))
        c = cart.points[i] + rng.normal(0, 0.3 * across, 3)
        axes = (
            rng.uniform(1.5, 6.0),
            rng.uniform(0.8, 0.8 * across),
            rng.uniform(0.8, 0.8 * across),
        )
        peak = float(rng.uniform(180, 500) + 8 * max(age - 55, 0) * rng.random())
        out.append(
            Lesion(0, "costal_cartilage", tuple(c), axes, _frame(tang, cart.normals[i]), peak)
        )
    return out
