"""CNN2 thresholds per label group, chosen on validation scans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calcscore.calibration import (
    CNN2Scores,
    choose_thresholds,
    collect_cnn2_scores,
    group_counts,
    threshold_table,
)
from calcscore.inference import InferenceOptions, Model, body_mask, segment
from calcscore.labels import Label
from calcscore.preprocess import normalise_hu, to_network_grid
from calcscore.sampling import cache_scan
from calcscore.volume import CTVolume, LabelVolume
from tests.test_inference import _centre_head, _models, _patches, _scan

L = Label


def _scores() -> CNN2Scores:
    # TAC: CNN1 calls 5 voxels TAC; 3 are TAC (p 0.3, 0.3, 0.8), 2 are background (p 0.1, 0.6);
    # a 4th TAC voxel was missed by CNN1. CAC: a LAD call on an LCX voxel is a CAC true positive.
    cnn1 = [L.TAC] * 5 + [L.LAD, L.LAD, L.RCA]
    ref = [L.TAC, L.TAC, L.TAC, 0, 0] + [L.LCX, 0, L.RCA]
    p = [0.3, 0.3, 0.8, 0.1, 0.6] + [0.7, 0.45, 0.9]
    counts = np.zeros(7, int)
    counts[L.TAC], counts[L.LCX], counts[L.RCA] = 4, 1, 1
    return CNN2Scores(
        np.array(cnn1, np.uint8), np.array(ref, np.uint8), np.array(p, np.float32), counts
    )


def test_group_counts_by_hand():
    s = _scores()
    assert group_counts(s, [L.TAC], 0.5) == (1, 1, 3)
    assert group_counts(s, [L.TAC], 0.2) == (3, 1, 1)
    assert group_counts(s, [L.TAC], 0.05) == (3, 2, 1)
    assert group_counts(s, [L.LAD, L.LCX, L.RCA], 0.5) == (2, 0, 0)  # LAD on LCX counts for CAC
    assert group_counts(s, [L.LAD, L.LCX, L.RCA], 0.4) == (2, 1, 0)


def test_thresholds_maximise_f1_nearest_the_default():
    # TAC F1: 0.667 at t <= 0.1, 0.75 for 0.15..0.3, 0.333 for 0.35..0.6, 0.4 for 0.65..0.8, 0 above
    # (the nearest to 0.5 of the best is 0.3). CAC: F1 1 for 0.5..0.7 (0.5 is the default).
    thresholds, table = choose_thresholds(_scores())
    assert thresholds["TAC"] == 0.3
    assert thresholds["CAC"] == 0.5
    assert thresholds["AV"] == thresholds["MV"] == 0.5  # no reference voxels: the default
    assert table.loc["TAC", "f1_chosen"] == pytest.approx(0.75)
    assert table.loc["TAC", "f1_default"] == pytest.approx(2 / 6)
    assert table.loc["TAC", "sensitivity_chosen"] == pytest.approx(0.75)
    assert table.loc["TAC", "fp_voxels_chosen"] == 1


def test_threshold_table_maps_groups_to_labels():
    t = threshold_table({"CAC": 0.2, "TAC": 0.35})
    assert t.tolist() == pytest.approx([0.5, 0.2, 0.2, 0.2, 0.35, 0.5, 0.5])
    assert threshold_table(None, default=0.7).tolist() == pytest.approx([0.7] * 7)
    assert threshold_table(0.3).tolist() == pytest.approx([0.3] * 7)  # one for all labels
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threshold_table(-0.1)
    with pytest.raises(ValueError, match="LM"):
        threshold_table({"LM": 0.3})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threshold_table({"TAC": 1.5})


def _prepared(*, whole_hu: bool = False):
    """A small scan, random networks spread over the classes, and the reference decisions
    (CNN1 label per candidate, CNN2 probability per CNN1 hit) from independently cut patches.
    ``whole_hu``: the network-grid HU rounded to integers, as the training cache stores them."""
    torch.set_num_threads(1)
    volume = _scan(3)
    cnn1, cnn2 = _models()
    net = to_network_grid(volume)
    if whole_hu:
        net = CTVolume(np.round(np.clip(net.hu, -1000, 3000)), net.spacing_mm)
    zyx = np.argwhere((net.hu >= 130) & body_mask(net))
    pad = 40
    norm = np.pad(normalise_hu(net.hu), pad, constant_values=normalise_hu(np.array(-1000.0)))
    with torch.no_grad():
        _centre_head(cnn1, _patches(norm, zyx[::7], 35, pad))
        label1 = (
            torch.cat(
                [
                    cnn1.predict_proba(_patches(norm, zyx[i : i + 256], 35, pad))
                    for i in range(0, len(zyx), 256)
                ]
            )
            .argmax(1)
            .numpy()
        )
        hit = np.flatnonzero(label1 > 0)
        x2 = _patches(norm, zyx[hit], 65, pad)
        cnn2.classifier[-1].bias.sub_(cnn2(x2).median(0).values)
        p2 = cnn2.predict_proba(x2).numpy()
    return volume, net, cnn1, cnn2, zyx, label1, hit, p2


@pytest.mark.slow
def test_segment_applies_the_threshold_of_each_label_group():
    volume, _, cnn1, cnn2, zyx, label1, hit, p2 = _prepared()
    thresholds = {"CAC": 0.3, "TAC": 0.7, "AV": 0.45, "MV": 0.6}
    per_label = threshold_table(thresholds).numpy()
    final = label1.copy()
    final[hit[p2 < per_label[label1[hit]]]] = 0
    seg = segment(
        volume, Model(cnn1, cnn2, cnn2_thresholds=thresholds), InferenceOptions(batch_cnn2=50)
    )
    got = seg.labels_network.labels[tuple(zyx.T)]
    assert len(np.unique(label1[hit])) >= 3  # several groups really take part
    np.testing.assert_array_equal(got, final)
    # an explicit threshold overrides the model's; 0 keeps everything CNN1 called calcium
    keep_all = segment(
        volume, Model(cnn1, cnn2, cnn2_thresholds=thresholds), InferenceOptions(cnn2_threshold=0.0)
    )
    np.testing.assert_array_equal(
        keep_all.labels_network.labels, keep_all.cnn1_labels_network.labels
    )
    # without thresholds the paper's 0.5
    paper = segment(volume, Model(cnn1, cnn2))
    final05 = label1.copy()
    final05[hit[p2 < 0.5]] = 0
    np.testing.assert_array_equal(paper.labels_network.labels[tuple(zyx.T)], final05)
    # other thresholds from the kept CNN2 probabilities, without running the networks again
    np.testing.assert_array_equal(paper.labels_at(volume, thresholds).labels, seg.labels.labels)
    np.testing.assert_array_equal(seg.labels_at(volume, None).labels, paper.labels.labels)
    np.testing.assert_array_equal(seg.labels_at(volume, 0.0).labels, keep_all.labels.labels)
    assert (seg.labels.labels != paper.labels.labels).any()  # the thresholds matter here


@pytest.mark.slow
def test_collect_scores_matches_patch_by_patch(tmp_path):
    volume, net, cnn1, cnn2, zyx, label1, hit, p2 = _prepared(whole_hu=True)
    # a reference: every voxel >= 130 HU left of x = 32 is TAC, right of it LAD
    ref = np.zeros(net.shape, np.uint8)
    cand = net.hu >= 130
    ref[cand] = np.where(np.indices(net.shape)[2][cand] < 32, L.TAC, L.LAD)
    scan = cache_scan(
        net,
        LabelVolume.like(net, ref),
        tmp_path / "s",
        scan_id="s",
        on_network_grid=True,
        crop=False,
    )
    assert np.array_equal(np.argwhere(cand), zyx)  # every candidate lies in the body here
    scores = collect_cnn2_scores(cnn1, cnn2, [scan, scan], progress=False)
    np.testing.assert_array_equal(scores.cnn1_label, np.tile(label1[hit], 2))
    np.testing.assert_array_equal(scores.ref_label, np.tile(ref[tuple(zyx[hit].T)], 2))
    np.testing.assert_allclose(scores.proba, np.tile(p2, 2), atol=1e-5)
    assert scores.ref_counts[L.TAC] == 2 * (ref == L.TAC).sum() > 0
    assert scores.ref_counts[L.LAD] == 2 * (ref == L.LAD).sum() > 0


def _plaque_case():
    """A noiseless blurred plaque on 1 mm slices, labelled perfectly on the network grid."""
    from scipy import ndimage as ndi

    from calcscore.inference import Segmentation
    from calcscore.preprocess import to_network_grid
    from calcscore.volume import CTMeta, CTVolume, LabelVolume

    z, y, x = np.meshgrid(
        np.arange(40) * 1.0, np.arange(48) * 0.6, np.arange(48) * 0.6, indexing="ij"
    )
    hu = np.full(z.shape, 40.0)
    hu[((z - 20) / 1.5) ** 2 + ((y - 14) / 4.0) ** 2 + ((x - 14) / 4.0) ** 2 < 1.0] = 450.0
    volume = CTVolume(
        ndi.gaussian_filter(hu, (0.8, 1.3, 1.3)),
        (1.0, 0.6, 0.6),
        meta=CTMeta(slice_thickness_mm=1.0),
    )
    net = to_network_grid(volume)
    cand = net.hu >= 130
    lab_net = LabelVolume.like(net, np.where(cand, 4, 0).astype(np.uint8))
    seg = Segmentation(
        LabelVolume.like(volume, np.zeros(volume.shape, np.uint8)),
        lab_net,
        lab_net,
        int(cand.sum()),
        {},
        candidates_network=cand,
    )
    return volume, seg


def test_rim_margin_is_chosen_where_the_rim_belongs_to_the_reference():
    from calcscore.calibration import choose_rim_sigmas
    from calcscore.volume import LabelVolume

    volume, seg = _plaque_case()
    whole = LabelVolume.like(volume, np.where(volume.hu >= 130, 4, 0).astype(np.uint8))
    best, table = choose_rim_sigmas([(volume, whole, seg)])
    assert best is not None  # the fill gives back the rim the nearest-neighbour mapping loses
    by = table.set_index("rim_sigmas")
    assert by.loc["no fill", "f1_TAC"] < 1.0 and by.loc[best, "f1_TAC"] == 1.0
    assert np.isnan(by.loc[best, "f1_CAC"])  # no coronary calcium: left out of the mean
    assert by.loc[best, "f1_mean"] == 1.0


def test_no_rim_fill_is_chosen_where_the_reference_leaves_the_rim_out():
    from calcscore.calibration import choose_rim_sigmas
    from calcscore.inference import _to_original_grid

    volume, seg = _plaque_case()
    core = _to_original_grid(seg.labels_network, volume, False)  # a reference without the rim
    best, table = choose_rim_sigmas([(volume, core, seg)])
    assert best is None
    assert table.set_index("rim_sigmas").loc["no fill", "f1_TAC"] == 1.0
