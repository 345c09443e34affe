import numpy as np
import pytest

from calcscore.labels import CAC_LABELS, COLOURS, GROUPS, Label
from calcscore.volume import CTVolume, GeometryMismatchError, LabelVolume, check_same_geometry


def test_label_values_follow_the_paper():
    assert [int(v) for v in Label] == [0, 1, 2, 3, 4, 5, 6]
    assert [lab.name for lab in Label][1:] == ["LAD", "LCX", "RCA", "TAC", "AV", "MV"]
    assert set(CAC_LABELS) == {Label.LAD, Label.LCX, Label.RCA}
    assert GROUPS["CAC"] == CAC_LABELS
    assert COLOURS[Label.LAD] == (1.0, 0.0, 0.0)  # red in Fig. 6
    assert Label.from_name(" tac ") is Label.TAC
    with pytest.raises(ValueError, match="valid names"):
        Label.from_name("LM")


def test_volume_is_frozen_and_checks_its_geometry():
    v = CTVolume(np.zeros((2, 3, 4)), (1, 2, 3))
    assert v.voxel_volume_mm3 == 6.0
    with pytest.raises(AttributeError):
        v.spacing_mm = (1, 1, 1)  # type: ignore[misc]
    with pytest.raises(ValueError, match="spacing_mm"):
        CTVolume(np.zeros((2, 3, 4)), (1, 0, 3))
    with pytest.raises(ValueError, match="3D"):
        CTVolume(np.zeros((3, 4)), (1, 1, 1))


def test_geometry_mismatch_names_both_geometries():
    a = CTVolume(np.zeros((2, 3, 4)), (1, 1, 1))
    b = LabelVolume(np.zeros((2, 3, 4), np.uint8), (1, 1, 2))
    with pytest.raises(GeometryMismatchError) as e:
        check_same_geometry(a, b)
    msg = str(e.value)
    assert "spacing_mm (1, 1, 1)" in msg and "spacing_mm (1, 1, 2)" in msg


def test_index_to_physical_identity_and_rotation():
    v = CTVolume(np.zeros((2, 3, 4)), (2.0, 0.5, 0.25), origin_mm=(30.0, 20.0, 10.0))
    # index (z=1, y=2, x=3) -> z = 30 + 1*2, y = 20 + 2*0.5, x = 10 + 3*0.25
    np.testing.assert_allclose(v.index_to_physical([1, 2, 3])[0], [32.0, 21.0, 10.75])


def test_label_volume_rejects_non_labels():
    with pytest.raises(ValueError, match="integer"):
        LabelVolume(np.full((1, 2, 2), 0.5), (1, 1, 1))
