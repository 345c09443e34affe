"""The calcium-insert test object of the phantoms (calcscore.phantom.inserts, issue 26)."""

from __future__ import annotations

import numpy as np
import pytest

from calcscore.labels import Label
from calcscore.phantom import make_cohort, make_scan, make_scans
from calcscore.phantom.inserts import insert_volume_mm3
from calcscore.phantom.objects import render_objects
from calcscore.phantom.scan import _draw_case


def _index(volume, p_xyz) -> tuple[int, int, int]:
    return tuple(
        int(round((p_xyz[2 - a] - volume.origin_mm[a]) / volume.spacing_mm[a])) for a in range(3)
    )


def test_insert_volume_is_a_cylinder_with_hemispherical_ends():
    (les,) = [
        i for i in make_scan(rng=5, size="small", insert_object=True)[2].insert_object.inserts
    ][:1]
    r = les.axes_mm[0]
    length = abs(les.points[-1][2] - les.points[0][2])
    assert insert_volume_mm3(les) == pytest.approx(np.pi * r**2 * length + 4 / 3 * np.pi * r**3)


@pytest.mark.parametrize("kernel", ["soft", "sharp"])
def test_rendered_inserts_hold_their_volume_and_calcium(kernel):
    """Blur moves an insert's HU about but keeps their integral: (peak HU) x (its volume), the
    peak 10 % lower at 140 kVp (calcscore.phantom.objects)."""
    case = _draw_case(
        11,
        scanner=None,
        size="medium",
        shape=None,
        spacing_mm=None,
        slice_thickness_mm=None,
        cac_category=None,
        anatomy="v2",
        insert_object=True,
    )
    acq, io = case.acquisition, case.insert_object
    assert len(io.inserts) >= 4
    vox = float(np.prod(acq.grid.spacing_mm))
    scale = 1.0 if acq.kvp <= 120 else 0.9
    for les in io.inserts:
        hu = np.zeros(acq.grid.shape, np.float32)
        (ro,) = render_objects(hu, acq, kernel, [les], lambda p: 0.0)
        v = insert_volume_mm3(les)
        assert ro.weight.sum() * vox == pytest.approx(v, rel=0.08)
        assert hu.sum() * vox == pytest.approx(scale * les.peak_hu * v, rel=0.08)


def test_insert_object_in_a_scan_labelled_lad_and_nothing_else_changes_far_from_it():
    plain = make_scans(rng=3, kernels=("soft",), size="small")["soft"]
    vol, lab, info = make_scans(rng=3, kernels=("soft",), size="small", insert_object=True)["soft"]
    io = info.insert_object
    assert 35 <= io.radius_mm <= 50 and 0 <= io.hu <= 95 and io.inserts
    z = vol.origin_mm[0] + np.arange(vol.shape[0]) * vol.spacing_mm[0]
    far = np.abs(z - io.center_mm[2]) > io.length_mm / 2 + 15
    assert far.sum() > 10
    # the subject, its noise and its other lesions are those of the same seed without it
    assert np.array_equal(vol.hu[far], plain[0].hu[far])
    assert np.array_equal(lab.labels[far], plain[1].labels[far])
    # every insert of >= 1 mm radius and >= 300 HU is labelled LAD at its centre
    for les in io.inserts:
        if les.axes_mm[0] >= 1.0 and les.peak_hu >= 300:
            assert lab.labels[_index(vol, les.center_mm)] == Label.LAD
    # inside the cylinder nothing but the inserts is labelled, and the tissue has the drawn HU
    zz, yy, xx = np.meshgrid(
        *(vol.origin_mm[a] + np.arange(vol.shape[a]) * vol.spacing_mm[a] for a in range(3)),
        indexing="ij",
    )
    cx, cy, cz = io.center_mm
    inside = (np.hypot(xx - cx, yy - cy) < io.radius_mm - 3) & (
        np.abs(zz - cz) < io.length_mm / 2 - 3
    )
    assert set(np.unique(lab.labels[inside])) <= {0, int(Label.LAD)}
    soft = inside & (lab.labels == 0) & (vol.hu < 130)
    assert np.median(vol.hu[soft]) == pytest.approx(io.hu, abs=12)


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_cohort_insert_fraction_is_drawn_per_participant_and_checked():
    def with_object(fraction: float) -> list[bool]:
        return [
            cs.info.insert_object is not None
            for cs in make_cohort(6, seed=4, size="small", kernels="soft", insert_fraction=fraction)
        ]

    assert with_object(0.0) == [False] * 6 and with_object(1.0) == [True] * 6
    half = with_object(0.5)
    expected = [np.random.default_rng([4, i, 26]).random() < 0.5 for i in range(6)]
    assert half == expected
    with pytest.raises(ValueError, match="insert_fraction"):
        next(make_cohort(1, seed=4, size="small", insert_fraction=1.5))
    with pytest.raises(ValueError, match="anatomy='v2'"):
        make_scan(rng=1, size="small", anatomy="v1", insert_object=True)
