"""The lesion fill: a lesion the networks labelled in large part is labelled whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from calcscore.inference import InferenceOptions, Model, Segmentation, segment
from calcscore.lesion_fill import fill_lesions
from calcscore.volume import CTMeta, CTVolume, LabelVolume


def _two_lesions():
    """Two balls of 400 HU (radius 4 and 3 voxels) in 40 HU tissue, apart."""
    z, y, x = np.meshgrid(np.arange(20), np.arange(30), np.arange(30), indexing="ij")
    hu = np.full(z.shape, 40.0)
    a = (z - 10) ** 2 + (y - 8) ** 2 + (x - 8) ** 2 <= 16
    b = (z - 10) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 9
    hu[a | b] = 400.0
    return hu, a, b


def test_a_lesion_labelled_in_large_part_is_labelled_whole_with_its_majority_label():
    hu, a, b = _two_lesions()
    labels = np.zeros(hu.shape, np.uint8)
    za = np.argwhere(a)
    labels[tuple(za[: int(0.4 * len(za))].T)] = 2  # 40 % of A as LCX
    labels[tuple(za[int(0.4 * len(za)) : int(0.5 * len(za))].T)] = 1  # 10 % of A as LAD
    zb = np.argwhere(b)
    labels[tuple(zb[: int(0.2 * len(zb))].T)] = 3  # 20 % of B as RCA
    labels[0, 0, 0] = 1  # a label below 130 HU belongs to no lesion
    out = fill_lesions(labels, hu, 0.3)
    aortic = np.where(labels > 0, 4, 0).astype(np.uint8)  # aortic lesions are left as labelled
    np.testing.assert_array_equal(fill_lesions(aortic, hu, 0.3), aortic)
    # A (50 % labelled) is labelled whole; its unlabelled voxels take the majority label LCX
    assert (out[a] > 0).all()
    assert (out[a & (labels == 0)] == 2).all()
    np.testing.assert_array_equal(out[labels > 0], labels[labels > 0])  # labels stay
    # B (20 % labelled) and everything outside the lesions are left as they were
    np.testing.assert_array_equal(out[b], labels[b])
    assert (out[~(a | b)] == labels[~(a | b)]).all()
    assert out.sum() > labels.sum() and labels is not out
    # B holds 24 of 123 voxels labelled (19.5 %): a share of 0.19 fills it, 0.2 does not
    np.testing.assert_array_equal(fill_lesions(labels, hu, 0.19)[b], np.where(b, 3, 0)[b])
    np.testing.assert_array_equal(fill_lesions(labels, hu, 0.2)[b], labels[b])
    for off in (None, 0.0):
        np.testing.assert_array_equal(fill_lesions(labels, hu, off), labels)


def test_lesions_are_26_connected_and_a_tie_goes_to_the_lower_label():
    hu = np.full((5, 5, 5), 0.0)
    hu[1, 1, 1] = hu[2, 2, 2] = hu[3, 3, 3] = 300.0  # joined corner to corner only
    hu[1, 1, 4] = 300.0  # alone
    labels = np.zeros(hu.shape, np.uint8)
    labels[1, 1, 1], labels[3, 3, 3] = 3, 1
    out = fill_lesions(labels, hu, 0.5)
    assert out[2, 2, 2] == 1 and out[1, 1, 4] == 0
    with pytest.raises(ValueError, match="shape"):
        fill_lesions(labels, hu[:4], 0.5)


def test_the_share_is_chosen_where_the_reference_holds_whole_lesions():
    from calcscore.calibration import choose_lesion_fill

    hu, a, b = _two_lesions()
    labels = np.zeros(hu.shape, np.uint8)
    za = np.argwhere(a)
    labels[tuple(za[: int(0.6 * len(za))].T)] = 3
    whole = np.where(a | b, 3, 0).astype(np.uint8)
    best, table = choose_lesion_fill([(hu, whole, labels, None)])
    none = table.iloc[0]
    by = table.iloc[1:].set_index(["lesion_fill", "lesion_fill_hu"])
    # the largest share that fills A (60 % labelled) at the highest threshold (all 400 HU)
    assert best == (0.5, 250.0) and none["lesion_fill"] == "no fill"
    tp, fn = a.sum(), b.sum()  # A filled whole, B (unlabelled) missed
    assert by.loc[(0.5, 250.0), "f1_CAC"] == pytest.approx(2 * tp / (2 * tp + fn))
    assert none["f1_CAC"] < by.loc[(0.5, 250.0), "f1_CAC"]
    assert by.loc[(0.7, 250.0), "f1_CAC"] == none["f1_CAC"]
    assert np.isnan(by.loc[(0.5, 250.0), "f1_TAC"])  # no aortic reference: left out of the mean
    # a reference of the labelled voxels alone: the fill only adds false positives
    best, table = choose_lesion_fill([(hu, labels, labels, None)])
    assert best is None and table.iloc[0]["f1_CAC"] == 1.0 > table["f1_CAC"].min()


def test_a_higher_threshold_parts_the_calcium_from_the_blur_around_it():
    hu, a, b = _two_lesions()
    halo = np.zeros(hu.shape, bool)
    halo[6:15, 2:15, 2:15] = True
    hu = np.where(halo & ~a, 150.0, hu)  # A sits in a block of 150 HU that joins it at 130 HU
    labels = np.where(a, 1, 0).astype(np.uint8)
    labels[tuple(np.argwhere(a)[::2].T)] = 0  # half of A labelled
    at_130 = fill_lesions(labels, hu, 0.3)
    at_200 = fill_lesions(labels, hu, 0.3, threshold_hu=200)
    assert not at_130[halo & ~a].any()  # A is 0.1 of its 130 HU lesion: nothing filled
    assert (at_200[a] == 1).all() and not at_200[~a].any()


def _plaque():
    """A lesion whose network-grid labels cover its left half (x < 14 px) only."""
    from calcscore.preprocess import to_network_grid

    z, y, x = np.meshgrid(np.arange(40), np.arange(48), np.arange(48), indexing="ij")
    hu = np.full(z.shape, 40.0)
    hu[((z - 20) / 2.5) ** 2 + ((y - 24) / 6.0) ** 2 + ((x - 24) / 6.0) ** 2 < 1.0] = 450.0
    volume = CTVolume(hu, (1.0, 0.6, 0.6), meta=CTMeta(slice_thickness_mm=1.0))
    net = to_network_grid(volume)
    cand = net.hu >= 130
    half = cand.copy()
    half[..., net.shape[2] // 2 + 1 :] = False
    lab = LabelVolume.like(net, np.where(half, 1, 0).astype(np.uint8))
    seg = Segmentation(LabelVolume.like(volume, np.zeros(hu.shape, np.uint8)), lab, lab, 0, {})
    seg.candidates_network = cand
    return volume, seg


def test_labels_at_fills_the_lesions_where_the_segmentation_did():
    volume, seg = _plaque()
    lesion = volume.hu >= 130
    plain = seg.labels_at(volume, None, rim_fill=False, safety_net=False).labels
    assert 0 < (plain[lesion] > 0).sum() < lesion.sum()
    seg.lesion_fill = 0.3
    filled = seg.labels_at(volume, None, rim_fill=False, safety_net=False).labels
    assert (filled[lesion] == 1).all() and not filled[~lesion].any()


def test_labels_at_votes_the_arteries_where_the_segmentation_did():
    """A plaque whose network-grid labels are LAD on its left quarter and LCX on the rest: one
    lesion, one artery (LCX, more than 2/3 of it) with the vote; both arteries without it."""
    volume, seg = _plaque()
    lab = seg.cnn1_labels_network.labels
    cand = seg.candidates_network
    xs = np.flatnonzero(cand.any(axis=(0, 1)))
    quarter = xs[0] + len(xs) // 4
    lab[...] = np.where(cand, 2, 0)
    lab[..., :quarter] = np.where(cand[..., :quarter], 1, 0)
    lesion = volume.hu >= 130
    both = seg.labels_at(volume, None, rim_fill=False, safety_net=False).labels
    assert seg.artery_vote is False and (both == 1).sum() < (both == 2).sum()
    assert (both == 1).any() and not both[~lesion].any()
    seg.artery_vote = True
    voted = seg.labels_at(volume, None, rim_fill=False, safety_net=False).labels
    assert set(np.unique(voted)) == {0, 2}
    np.testing.assert_array_equal(voted > 0, both > 0)  # the same CAC voxels


def test_segment_takes_the_share_from_the_options_before_the_model():
    from test_inference import _scan

    from calcscore.networks import CNN1

    torch.manual_seed(0)
    cnn1 = CNN1(width=6, head_width=8, max_dilation=8).eval()
    with torch.no_grad():  # every candidate LAD: the fill is for coronary lesions
        cnn1.head_layers[-1].weight.zero_()
        cnn1.head_layers[-1].bias.zero_()
        cnn1.head_layers[-1].bias[1] = 5.0
    volume = _scan(3)
    model = Model(cnn1, None, safety_net=False, lesion_fill=0.01)
    # without the rim fill, the voxels the network grid never saw are left to the lesion fill
    plain = segment(volume, model, InferenceOptions(lesion_fill=0, rim_fill=False))
    seg = segment(volume, model, InferenceOptions(rim_fill=False))
    assert plain.lesion_fill is None and seg.lesion_fill == 0.01
    before, after = plain.labels.labels, seg.labels.labels
    np.testing.assert_array_equal(after[before > 0], before[before > 0])
    assert (after > 0).sum() > (before > 0).sum()
    # every lesion with a label is labelled whole (0.01: one voxel is enough here)
    from scipy import ndimage

    comps, _ = ndimage.label(volume.hu >= 130, structure=np.ones((3, 3, 3), bool))
    touched = np.unique(comps[(before > 0) & (comps > 0)])
    assert (after[np.isin(comps, touched)] > 0).all()
    only = segment(volume, model, InferenceOptions(lesion_fill=0.99, rim_fill=False))
    assert only.lesion_fill == 0.99
    assert seg.artery_vote is True  # step 10 runs by default, and labels_at repeats it
    off = segment(volume, model, InferenceOptions(rim_fill=False, artery_vote=False))
    assert off.artery_vote is False


def test_the_rim_stage_chooses_the_share_on_the_validation_scans(monkeypatch):
    from types import SimpleNamespace

    from calcscore.pipeline import evaluation

    volume, seg = _plaque()
    whole = LabelVolume.like(volume, np.where(volume.hu >= 130, 1, 0).astype(np.uint8))
    monkeypatch.setattr(
        evaluation,
        "cohort_scans",
        lambda part, **kw: iter([SimpleNamespace(volume=volume, labels=whole)]),
    )
    monkeypatch.setattr(evaluation, "segment", lambda *a, **kw: seg)
    monkeypatch.setattr(evaluation, "choose_rim_sigmas", lambda cases: (None, pd.DataFrame()))
    model = SimpleNamespace(cnn2_thresholds=None)
    kw = dict(n_participants=1, seed=0, groups=lambda n: {"small": n}, device="cpu")
    out = evaluation.choose_rim(model, ["P0001"], **kw)
    assert "lesion_fill" not in out
    out = evaluation.choose_rim(model, ["P0001"], lesion_fill=True, **kw)
    half = seg.labels_at(volume, None, rim_fill=False, safety_net=False).labels
    share = (half > 0).sum() / (volume.hu >= 130).sum()
    assert 0.3 < share < 0.5  # so 0.3 is the largest share that fills the lesion
    # the plaque is 450 HU with sharp edges: every threshold draws the same lesion
    assert (out["lesion_fill"], out["lesion_fill_hu"]) == (0.3, 250.0)
    assert (model.lesion_fill, model.lesion_fill_hu) == (0.3, 250.0)
    rows = pd.DataFrame(out["lesion_fill_choice"]["table"])
    none, rows = rows.iloc[0], rows.iloc[1:].set_index(["lesion_fill", "lesion_fill_hu"])
    assert rows.loc[(0.3, 130.0), "f1_CAC"] == 1.0 > none["f1_CAC"]
    assert rows.loc[(0.5, 130.0), "f1_CAC"] == none["f1_CAC"]


def test_the_recipe_key_is_hashed_only_where_set(tmp_path):
    """``[rim] lesion_fill``: unset or false leaves every stage's hash as before (built models
    keep their caches); true changes the rim stage's and those after it."""
    from test_build_model import _tiny

    from calcscore.pipeline.build import stage_hashes
    from calcscore.pipeline.recipe import load_recipe

    before = stage_hashes(load_recipe(_tiny(tmp_path)))
    rim = "choose = false  #"
    off = _tiny(tmp_path, rim, "choose = false\nlesion_fill = false  #", "off.toml")
    assert stage_hashes(load_recipe(off)) == before
    on = load_recipe(_tiny(tmp_path, rim, "choose = true\nlesion_fill = true  #", "on.toml"))
    assert on.rim.lesion_fill is True
    only_choose = load_recipe(_tiny(tmp_path, rim, "choose = true  #", "c.toml"))
    after, chosen = stage_hashes(on), stage_hashes(only_choose)
    assert after["thresholds"] == before["thresholds"]
    assert after["rim"] != chosen["rim"] and after["evaluation"] != chosen["evaluation"]


def test_the_model_reads_its_share_and_threshold_from_model_json(tmp_path):
    import json
    import shutil

    from calcscore.inference import DEFAULT_MODEL_DIR

    for f in ("cnn1.pt", "cnn2.pt", "model.json"):
        shutil.copy(DEFAULT_MODEL_DIR / f, tmp_path / f)
    info = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(
        json.dumps({**info, "lesion_fill": 0.5, "lesion_fill_hu": 200.0})
    )
    model = Model.load(tmp_path)
    assert (model.lesion_fill, model.lesion_fill_hu) == (0.5, 200.0)
    older = {k: v for k, v in info.items() if k not in ("lesion_fill", "lesion_fill_hu")}
    (tmp_path / "model.json").write_text(json.dumps(older))  # a model built before the fill
    assert (Model.load(tmp_path).lesion_fill, Model.load(tmp_path).lesion_fill_hu) == (None, 130)


def test_a_lesion_that_runs_on_beyond_the_margin_around_its_coronary_labels_is_left():
    """The fill looks at a box 16 voxels around the labels it fills: a lesion that reaches the
    box's side is left as labelled, though 77 % of it carries a label."""
    hu = np.zeros((5, 5, 80))
    hu[2, 2, 5:65] = 400.0  # a rod of 60 voxels
    labels = np.zeros(hu.shape, np.uint8)
    labels[2, 2, 5:31] = 1  # 26 LAD at one end
    labels[2, 2, 45:65] = 4  # 20 TAC at the other: LAD is the majority
    np.testing.assert_array_equal(fill_lesions(labels, hu, 0.7), labels)
    near = labels.copy()
    near[2, 2, 45:65] = 0
    hu[2, 2, 40:65] = 0.0  # the rod cut to 35 voxels, 26 of them LAD, inside the box: filled
    filled = fill_lesions(near, hu, 0.7)
    assert (near[2, 2, 31:40] == 0).all() and (filled[2, 2, 5:40] == 1).all()


def test_validation_hybrids_break_a_tie_the_phantoms_leave(monkeypatch):
    """``hybrids``: scans of real anatomy with a dim halo of calcium around a bright core (as
    heavy calcification is) join the choice of the fill; the phantom alone fills at every
    threshold alike, the hybrid only at 130 HU, so the pair is chosen where the hybrid says."""
    from types import SimpleNamespace

    from calcscore.pipeline import evaluation

    volume, seg = _plaque()
    whole = LabelVolume.like(volume, np.where(volume.hu >= 130, 1, 0).astype(np.uint8))
    z, y, x = np.meshgrid(np.arange(30), np.arange(30), np.arange(30), indexing="ij")
    r2 = (z - 15) ** 2 + (y - 15) ** 2 + (x - 15) ** 2
    hu = np.where(r2 <= 16, 450.0, np.where(r2 <= 30, 150.0, 40.0))
    hybrid = CTVolume(hu, (1.0, 0.6, 0.6), meta=CTMeta(slice_thickness_mm=1.0))
    core = (r2 <= 16).astype(np.uint8)
    reference = (hu >= 130).astype(np.uint8)
    assert 0.3 < core.sum() / reference.sum() < 0.5  # filled at 130 HU by 0.3 alone
    seen = []

    def fake_segment(vol, model, options):
        seen.append(options.lesion_fill)
        return (
            SimpleNamespace(labels=LabelVolume.like(hybrid, core), regions=None)
            if vol is hybrid
            else seg
        )

    monkeypatch.setattr(
        evaluation,
        "cohort_scans",
        lambda part, **kw: iter([SimpleNamespace(volume=volume, labels=whole)]),
    )
    monkeypatch.setattr(evaluation, "segment", fake_segment)
    monkeypatch.setattr(evaluation, "choose_rim_sigmas", lambda cases: (None, pd.DataFrame()))
    model = SimpleNamespace(cnn2_thresholds=None)
    kw = dict(n_participants=1, seed=0, groups=lambda n: {"small": n}, device="cpu")
    alone = evaluation.choose_rim(model, ["P0001"], lesion_fill=True, **kw)
    assert (alone["lesion_fill"], alone["lesion_fill_hu"]) == (0.3, 250.0)
    out = evaluation.choose_rim(
        model,
        ["P0001"],
        lesion_fill=True,
        hybrids=[("real-h-validation4", hybrid, reference)],
        **kw,
    )
    assert (out["lesion_fill"], out["lesion_fill_hu"]) == (0.3, 130.0)
    assert out["lesion_fill_choice"]["participants"] == ["P0001", "real-h-validation4"]
    assert seen[-1] == 0  # the hybrid is segmented without a fill; the choice adds it
    assert "real-h-validation4" not in out["rim_choice"]["participants"]


@pytest.mark.slow
def test_validation_hybrids_are_new_copies_of_the_real_negatives(tmp_path):
    """``[rim] hybrids = N``: N copies of every real negative after the training ones (other
    lesions, the same settings), their inserted lesions as the reference; a recipe that cannot
    use them is refused."""

    from test_build_model import _tiny, real_negative_chest

    from calcscore.io import read_volume
    from calcscore.pipeline.build import stage_hashes
    from calcscore.pipeline.hybrids import validation_hybrids
    from calcscore.pipeline.recipe import load_recipe
    from calcscore.pipeline.recipe_schema import RecipeError
    from calcscore.realism.hybrid import hybrid_scan

    _, hearts = real_negative_chest(tmp_path)
    volume = read_volume(tmp_path / "chest.nii.gz")  # as the build reads it
    rn = 'scans = ["chest"]\nimages = "."\nlabels = "."\n'
    rn += "hybrid = { lesions = 3, copies = 2, weight = 5, seed = 1, elongated = 0.5 }"
    rim = "choose = false  #"
    fill = "choose = true\nlesion_fill = true\nhybrids = 1  #"

    def recipe(name, rim_text, seed=1):
        path = _tiny(tmp_path, "scans = []", rn.replace("seed = 1", f"seed = {seed}"), name)
        path.write_text(path.read_text().replace(rim, rim_text))
        return load_recipe(path)

    on, off = recipe("on.toml", fill), recipe("off.toml", fill.replace("hybrids = 1", ""))
    copies = validation_hybrids(on, 1)
    assert [name for name, _, _ in copies] == ["real-chest-validation2"]
    _, copy, reference = copies[0]
    train = [
        hybrid_scan(volume, hearts["chest"], 3, np.random.default_rng([1, 0, c]))[1]
        for c in range(2)
    ]
    own = hybrid_scan(volume, hearts["chest"], 3, np.random.default_rng([1, 0, 2]), elongated=0.5)
    assert np.array_equal(reference, np.where(own[1] > 0, 1, 0))
    assert np.array_equal(copy.hu, own[0].hu) and reference.any()
    assert all(not np.array_equal(reference > 0, t > 0) for t in train)
    assert set(np.unique(reference)) == {0, 1}
    assert validation_hybrids(off, 0) == []
    hashes, without = stage_hashes(on), stage_hashes(off)
    assert hashes["rim"] != without["rim"] and hashes["cnn1"] == without["cnn1"]
    # the rim stage follows the real negatives (through the networks trained on them)
    assert stage_hashes(recipe("s.toml", fill, seed=2))["rim"] != hashes["rim"]
    with pytest.raises(RecipeError, match=r"\[rim\] hybrids: validation copies choose only"):
        recipe("b.toml", "choose = true\nhybrids = 1  #")
    bare = _tiny(tmp_path, rim, fill, "n.toml")
    with pytest.raises(RecipeError, match=r"\[rim\] hybrids: needs real negatives"):
        load_recipe(bare)


def test_validation_hybrids_of_whole_chests_are_cut_heart_only_too(tmp_path):
    """``[rim] heart_only = [names]``: each validation copy of those real negatives is followed
    by its heart-only cut (the gated field of view, where heavy calcification is labelled least),
    its reference cut alike; the key changes the rim stage's hash and is checked."""
    from test_build_model import _tiny, real_negative_chest

    from calcscore.pipeline.build import stage_hashes
    from calcscore.pipeline.hybrids import validation_hybrids
    from calcscore.pipeline.recipe import load_recipe
    from calcscore.pipeline.recipe_schema import RecipeError
    from calcscore.realism.hybrid import heart_only_cut, hybrid_scan

    volume, hearts = real_negative_chest(tmp_path)
    rn = 'scans = ["chest"]\nimages = "."\nlabels = "."\n'
    rn += "hybrid = { lesions = 3, copies = 2, weight = 5, seed = 1, elongated = 0.5 }"
    fill = "choose = true\nlesion_fill = true\nhybrids = 1\n"

    def recipe(name, rim_text):
        path = _tiny(tmp_path, "scans = []", rn, name)
        path.write_text(path.read_text().replace("choose = false  #", rim_text + "  #"))
        return load_recipe(path)

    cut, whole = recipe("c.toml", fill + 'heart_only = ["chest"]'), recipe("w.toml", fill)
    copies = validation_hybrids(cut, 1, cut.rim.heart_only)
    names = [name for name, _, _ in copies]
    assert names == ["real-chest-validation2", "real-chest-validation2-heart-only"]
    assert [n for n, _, _ in validation_hybrids(whole, 1, whole.rim.heart_only)] == names[:1]
    copy, ref, _, lesions = hybrid_scan(
        volume, hearts["chest"], 3, np.random.default_rng([1, 0, 2]), elongated=0.5
    )
    want, want_ref = heart_only_cut(copy, ref, lesions, hearts["chest"])
    _, got, got_ref = copies[1]
    assert got.shape == want.shape and np.allclose(got.origin_mm, want.origin_mm, atol=1e-4)
    assert np.array_equal(got_ref, np.where(want_ref > 0, 1, 0)) and got_ref.any()
    assert stage_hashes(cut)["rim"] != stage_hashes(whole)["rim"]
    with pytest.raises(RecipeError, match=r"\[rim\] heart_only: names scans that are not"):
        recipe("u.toml", fill + 'heart_only = ["lung"]')
    with pytest.raises(RecipeError, match=r"\[rim\] heart_only: cuts validation copies"):
        recipe("n.toml", 'choose = true\nlesion_fill = true\nheart_only = ["chest"]')


def test_the_card_says_what_the_fill_was_chosen_on():
    import json

    from calcscore.inference import DEFAULT_MODEL_DIR
    from calcscore.pipeline.card import card

    info = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    names = ["P0308", "P0310", "real-chest-validation4", "real-heart-validation4"]
    info.update(lesion_fill=0.3, lesion_fill_hu=200.0, lesion_fill_choice={"participants": names})
    line = next(x for x in card(info).splitlines() if "lesion fill" in x)
    assert (
        "(>= 200 HU) 0.3 labelled is labelled whole (chosen on 2 validation phantoms and 2 " in line
    )
    info["lesion_fill_choice"] = {"participants": [*names, "real-chest-validation4-heart-only"]}
    line = next(x for x in card(info).splitlines() if "lesion fill" in x)
    assert (
        "phantoms and 2 copies of the real negatives with synthetic lesions, 1 of them also "
        in line
    )
    info["lesion_fill_choice"] = {"participants": names[:2]}
    line = next(x for x in card(info).splitlines() if "lesion fill" in x)
    assert "whole (chosen on 2 validation phantoms); artery vote" in line
    info["lesion_fill"] = None
    assert "lesion fill" not in card(info)


def test_the_fill_grows_only_labels_the_safety_net_keeps():
    """A bright tube (a lead, a node chain) runs from above the heart into it. A coronary label
    on its upper part, outside the heart region, is removed by the net; filled before the net it
    would have grown the label down into the heart region, where the net keeps coronary labels.
    A lesion labelled inside the region still fills, and nothing is added outside it."""
    from calcscore.postprocess import fill_within_net
    from calcscore.regions import AORTA, HEART, ChestRegions

    hu = np.full((30, 20, 20), 40.0)
    hu[2:28, 9:12, 9:12] = 600.0  # the tube, z 2-27
    hu[5:9, 2:6, 2:6] = 500.0  # a plaque inside the heart region (z < 15)
    zone = np.zeros(hu.shape, np.uint8)
    zone[:15] = HEART | AORTA
    regions = ChestRegions(zone, True, 1000.0, 14, 0.0)
    labels = np.zeros(hu.shape, np.uint8)
    labels[18:28, 9:12, 9:12] = 1  # LAD on the tube's upper part: 10 of 26 slices (38 %)
    labels[5:7, 2:6, 2:6] = 2  # LCX on half the plaque
    kept, _ = apply_net(labels, regions)
    assert not kept[15:].any() and (kept[5:7, 2:6, 2:6] == 2).all()
    out = fill_within_net(kept, hu, 0.3, 200.0, regions)
    assert not out[2:28, 9:12, 9:12].any()  # the tube: no label left, none grown
    assert (out[5:9, 2:6, 2:6] == 2).all()  # the plaque: filled whole
    # the old order (fill, then the net) labels the tube inside the heart region
    before = apply_net(fill_lesions(labels, hu, 0.3, threshold_hu=200.0), regions)[0]
    assert (before[2:15, 9:12, 9:12] == 1).all()
    # without the net (regions None) the fill runs on the labels as they are
    assert (fill_within_net(labels, hu, 0.3, 200.0, None)[2:28, 9:12, 9:12] == 1).all()
    assert fill_within_net(labels, hu, None, 200.0, regions) is labels


def test_the_choice_fills_as_inference_does_within_the_net():
    """The fill's choice trims what the fill adds outside the net's regions, as ``segment``
    does: a bright tube runs from the heart region out of it, its part in the region is the
    reference, 9 of its 24 slices are labelled. Within the net the fill at 0.3 labels exactly
    the reference; without the regions it also labels the 11 slices outside."""
    from calcscore.calibration import choose_lesion_fill
    from calcscore.regions import AORTA, HEART, ChestRegions

    hu = np.full((30, 20, 20), 40.0)
    hu[2:26, 9:12, 9:12] = 600.0
    zone = np.zeros(hu.shape, np.uint8)
    zone[:15] = HEART | AORTA
    regions = ChestRegions(zone, True, 1000.0, 14, 0.0)
    reference = np.zeros(hu.shape, np.uint8)
    reference[2:15, 9:12, 9:12] = 1
    labels = np.zeros(hu.shape, np.uint8)
    labels[2:11, 9:12, 9:12] = 1
    _, within = choose_lesion_fill([(hu, reference, labels, regions)], grid=[0.3], hu_grid=[200])
    best, bare = choose_lesion_fill([(hu, reference, labels, None)], grid=[0.3], hu_grid=[200])
    tp, fn, fp = 9 * 9, 4 * 9, 11 * 9  # each slice of the tube is 3 x 3 voxels
    assert within["f1_CAC"].tolist() == pytest.approx([2 * tp / (2 * tp + fn), 1.0])
    assert bare["f1_CAC"].iloc[1] == pytest.approx(2 * 117 / (2 * 117 + fp))
    assert best is None  # without the trim the fill costs more than it gains here


def apply_net(labels, regions):
    from calcscore.regions import apply_safety_net

    return apply_safety_net(labels, regions)
