"""calcscore.phantom.observe: the disagreements of a second or third observer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from calcscore.labels import Label
from calcscore.phantom import ObserverProfile, make_scan, observe
from calcscore.volume import CTVolume, GeometryMismatchError, LabelVolume

SPACING = (1.0, 0.5, 0.5)
NEVER = dict(
    p_miss_small=0.0,
    p_lad_lcx=0.0,
    p_lad_lcx_near=0.0,
    p_lcx_mv=0.0,
    p_lcx_mv_near=0.0,
    p_av_tac=0.0,
    p_av_tac_near=0.0,
    p_boundary=0.0,
)


def _blob(hu, lab, center, radius_vox, label, peak=600.0):
    z, y, x = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    cz, cy, cx = center
    # radius in mm -> anisotropic voxels: z spacing 1 mm, in-plane 0.5 mm
    d2 = ((z - cz) * SPACING[0]) ** 2 + ((y - cy) * SPACING[1]) ** 2 + ((x - cx) * SPACING[2]) ** 2
    core = d2 <= radius_vox**2
    halo = (d2 <= (radius_vox + 0.8) ** 2) & ~core
    hu[core] = peak
    hu[halo] = np.maximum(hu[halo], 150.0)  # a faint rim >= 130 HU the reference left out
    lab[core] = label


@pytest.fixture
def scene():
    """Lesions in pairs that observers confuse, plus one small lesion."""
    shape = (24, 120, 160)
    hu = np.full(shape, 40.0, np.float32)
    lab = np.zeros(shape, np.uint8)
    _blob(hu, lab, (8, 30, 30), 2.5, Label.LAD)
    _blob(hu, lab, (8, 30, 50), 2.5, Label.LCX)  # 10 mm from the LAD lesion
    _blob(hu, lab, (16, 90, 30), 2.5, Label.MV)
    _blob(hu, lab, (16, 90, 48), 2.0, Label.LCX)  # next to the mitral annulus
    _blob(hu, lab, (8, 90, 110), 2.5, Label.AV)
    _blob(hu, lab, (8, 90, 130), 3.0, Label.TAC)  # at the aortic root
    _blob(hu, lab, (16, 30, 140), 0.6, Label.RCA)  # small: about 1 mm^3
    vol = CTVolume(hu, SPACING, (0.0, 0.0, 0.0))
    return vol, LabelVolume.like(vol, lab)


def _components(lab: np.ndarray) -> list[tuple[int, np.ndarray]]:
    comp, n = ndimage.label(lab > 0, structure=np.ones((3, 3, 3), bool))
    return [(int(np.bincount(lab[comp == i]).argmax()), comp == i) for i in range(1, n + 1)]


def test_identity_when_nothing_can_differ(scene):
    vol, lab = scene
    out = observe(lab, vol, rng=0, profile=ObserverProfile(**NEVER))
    assert np.array_equal(out.labels, lab.labels)
    assert out.same_geometry(lab)


def test_misses_small_lesions_only(scene):
    vol, lab = scene
    out = observe(lab, vol, rng=0, profile=ObserverProfile(**{**NEVER, "p_miss_small": 1.0}))
    assert not np.any(out.labels == Label.RCA)  # the 1 mm^3 lesion is gone
    kept = lab.labels.copy()
    kept[kept == Label.RCA] = 0
    assert np.array_equal(out.labels, kept)


@pytest.mark.parametrize(
    "field, pairs",
    [
        ("p_lad_lcx_near", {(Label.LAD, Label.LCX)}),
        ("p_lcx_mv_near", {(Label.LCX, Label.MV), (Label.MV, Label.LCX)}),
        ("p_av_tac_near", {(Label.AV, Label.TAC), (Label.TAC, Label.AV)}),
    ],
)
def test_confuses_neighbouring_labels(scene, field, pairs):
    vol, lab = scene
    out = observe(lab, vol, rng=1, profile=ObserverProfile(**{**NEVER, field: 1.0}))
    changed = set()
    for ref_label, mask in _components(lab.labels):
        new = set(np.unique(out.labels[mask]))
        assert len(new) == 1
        new_label = Label(new.pop())
        if new_label != ref_label:
            changed.add((Label(ref_label), new_label))
    assert changed and changed <= (pairs | {(b, a) for a, b in pairs}), changed
    firsts = {a for a, _ in changed}
    assert firsts & {a for a, _ in pairs}


def test_boundary_differences_stay_calcium(scene):
    vol, lab = scene
    out = observe(
        lab,
        vol,
        rng=2,
        profile=ObserverProfile(**{**NEVER, "p_boundary": 1.0, "shrink_below_hu": 700.0}),
    )
    diff = out.labels != lab.labels
    assert diff.any()
    # differences only at lesion boundaries: within one voxel of the reference calcium
    near = ndimage.binary_dilation(lab.labels > 0, np.ones((3, 3, 3), bool))
    assert np.all(near[diff])
    assert vol.hu[out.labels > 0].min() >= 130
    grown = (out.labels > 0) & (lab.labels == 0)
    shrunk = (out.labels == 0) & (lab.labels > 0)
    assert grown.any() or shrunk.any()


def test_default_observer_is_deterministic_and_mostly_agrees():
    # the observer model reads only the labels and the image, not the anatomy: this case stays
    # the first generator's ("v1"), whose noise and labels make rng 5 disagree somewhere (with
    # the realistic anatomy's other noise this one case happens to agree voxel for voxel)
    vol, lab, info = make_scan(rng=21, size="small", cac_category=4, anatomy="v1")
    a = observe(lab, vol, rng=5, info=info)
    b = observe(lab, vol, rng=5, info=info)
    c = observe(lab, vol, rng=6, info=info)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    ref, obs = lab.labels > 0, a.labels > 0
    dice = 2 * (ref & obs).sum() / (ref.sum() + obs.sum())
    assert 0.7 < dice < 1.0
    assert vol.hu[obs].min() >= 130


def test_errors(scene):
    vol, lab = scene
    other = LabelVolume(lab.labels[:-1], SPACING, (0.0, 0.0, 0.0))
    with pytest.raises(GeometryMismatchError):
        observe(other, vol, rng=0)
    with pytest.raises(ValueError, match="p_boundary"):
        ObserverProfile(p_boundary=1.5)
