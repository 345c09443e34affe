"""The realistic phantom anatomy ("v2"): skeleton, cartilage, shoulder girdle, acquisition options.

Expectations are anatomical facts (ribs descend towards the front, costal cartilage is soft-tissue
dense, the humeral heads lie lateral to the chest), not figures read off the generator.
"""

from __future__ import annotations

import numpy as np
import pytest

from calcscore.phantom import ANATOMIES, make_scan
from calcscore.phantom._draw import GridSpec
from calcscore.phantom.anatomy import build_geometry, draw_subject, render_anatomy


def _geo(seed: int, anatomy: str = "v2"):
    return build_geometry(draw_subject(np.random.default_rng(seed)), anatomy)


def test_anatomies_and_the_first_generator_is_still_there():
    assert ANATOMIES == ("v1", "v2")
    assert _geo(1, "v1").habitus is None and _geo(1).habitus is not None
    with pytest.raises(ValueError, match="anatomy"):
        make_scan(rng=1, size="small", anatomy="v3")
    # same subject in both anatomies: its airways and lung vessels; v2 has a heart and an aorta
    # of its own (tests/test_phantom_heart.py)
    g1, g2 = _geo(4, "v1"), _geo(4, "v2")
    assert np.array_equal(g1.carina, g2.carina) and np.array_equal(g1.trachea, g2.trachea)
    assert g1.heart is None and g2.heart is not None


def test_ribs_descend_towards_the_front_and_meet_the_spine_and_the_sternum():
    for seed in range(6):
        geo = _geo(seed)
        hab = geo.habitus
        assert len(hab.ribs) == 24 and len(hab.cartilages) == 20
        for rib in hab.ribs:
            head, end = rib.points[0], rib.points[-1]
            n = int(rib.name.split()[1])
            # the head at the vertebral body's side (costovertebral joint), within 12 mm of it
            assert abs(head[0] - geo.spine_x) < geo.vb_radii[0] + 12, rib.name
            # anterior end lower than the head (ribs run obliquely downwards to the front)
            assert end[2] < head[2] - 15, rib.name
            # ribs 1-10 end in front of the vertebral body (11 and 12 float at the side)
            assert n > 10 or end[1] < geo.spine_y(end[2]) - geo.vb_radii[1], rib.name
        for cart in hab.cartilages[:7] + hab.cartilages[10:17]:  # ribs 1-7 reach the sternum
            tip = cart.points[-1]
            assert abs(tip[0] - geo.body_center[0]) < 30, cart.name


def test_costal_cartilage_is_soft_tissue_dense_and_bone_is_dense():
    geo = _geo(2)
    hab = geo.habitus
    cart = hab.cartilages[3]  # cartilage 4, left
    c = cart.points[len(cart.points) // 2]
    grid = GridSpec((25, 60, 60), (1.0, 1.0, 1.0), (c[2] - 12, c[1] - 30, c[0] - 30))
    hu = render_anatomy(geo, grid)
    assert 100 <= hab.cartilage_hu <= 200
    assert abs(hu[12, 30, 30] - hab.cartilage_hu) < 15  # the cartilage's centre
    rib = hab.ribs[4].points[20]  # rib 5's cortex and marrow
    grid = GridSpec((21, 40, 40), (1.0, 0.5, 0.5), (rib[2] - 10, rib[1] - 10, rib[0] - 10))
    hu = render_anatomy(geo, grid)
    assert hu.max() > 600 and 50 < hu[10, 20, 20] < 400  # cortex bright, marrow cancellous


def test_shoulder_girdle_arms_up_or_down_per_participant():
    arms = set()
    for seed in range(20):
        geo = _geo(seed)
        hab = geo.habitus
        arms.add(hab.arms_up)
        for head, side in zip(hab.humeral_heads, (-1, 1)):
            # the humeral heads lie lateral to the ribs, above the heart
            assert side * (head[0] - geo.body_center[0]) > 0.7 * geo.subject.body_half_width_mm
            assert head[2] > geo.subject.z_av_mm + 40
        assert len(hab.clavicles) == 2
    assert arms == {True, False}


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_cartilage_calcifications_lie_on_the_cartilage_and_grow_with_age():
    from calcscore.phantom.confounders import confounders

    per_age = {}
    for seed in range(40):
        geo = _geo(seed)
        carts = np.concatenate([c.points for c in geo.habitus.cartilages])
        lesions = confounders(geo, seed, age=geo.subject.age)
        found = [les for les in lesions if les.kind == "costal_cartilage"]
        for les in found:
            assert les.label == 0  # never labelled
            assert np.linalg.norm(carts - np.asarray(les.center_mm), axis=1).min() < 6.0
        per_age.setdefault(geo.subject.age > 65, []).append(len(found))
    assert np.mean(per_age[True]) > np.mean(per_age[False]) > 0


def test_gated_heart_only_and_5_mm_slices():
    vol, lab, info = make_scan(rng=3, size="gated", kernel="soft", scanner="ge_lightspeed16")
    assert vol.shape == (56, 512, 512) and vol.spacing_mm == (3.0, 0.4, 0.4)
    assert vol.hu[0, 0, 0] == -3024  # outside the heart-only reconstruction circle
    assert info.burden.motion_mm <= 0.25 * 3.2  # gating leaves a quarter of the motion
    # the heart is in the field of view: the aortic valve lies inside it
    av = info.valves["AV"][0]
    idx = np.round((av - vol.origin_mm) / vol.spacing_mm)
    assert np.all(idx >= 0) and np.all(idx < vol.shape)
    v5, _, _ = make_scan(rng=3, size="small", slice_thickness_mm=5, slice_spacing_mm=5)
    assert v5.spacing_mm[0] == 5.0 and v5.meta.slice_thickness_mm == 5.0
    assert v5.shape[0] == 30  # the small field's 150 mm in 5 mm slices


def test_shoulder_streaks_lie_at_the_shoulders_and_are_the_same_for_both_kernels():
    from calcscore.phantom.artifacts import add_shoulder_streaks

    geo = _geo(9)
    heads = np.array(geo.habitus.humeral_heads)
    zc = float(heads[:, 2].mean())
    grid = GridSpec((61, 200, 200), (3.0, 1.0, 1.0), (zc - 90, heads[0, 1] - 100, heads[0, 0] - 30))
    out = {}
    for kernel in ("soft", "sharp"):
        hu = np.zeros(grid.shape, np.float32)
        add_shoulder_streaks(hu, grid, geo, 25.0, kernel, 5)
        out[kernel] = hu
    z = grid.axis_mm(0)
    far = np.abs(z - zc) > 45
    assert not out["soft"][far].any() and out["soft"][~far].std() > 5
    assert np.corrcoef(out["soft"].ravel(), out["sharp"].ravel())[0, 1] > 0.99
    v1 = _geo(9, "v1")
    hu = np.zeros(grid.shape, np.float32)
    add_shoulder_streaks(hu, grid, v1, 25.0, "soft", 5)
    assert not hu.any()  # the first generator has no shoulders
