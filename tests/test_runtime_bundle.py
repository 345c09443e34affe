"""The neutral modules: constants, runtime (device, precision) and bundle (model folders), and
the old names that stay importable from the modules they were in."""

import os

import numpy as np
import pytest
import torch

from calcscore import bundle, constants, runtime
from calcscore.errors import CalcscoreError, InputError


@pytest.mark.parametrize(
    ("module", "name", "value"),
    [
        ("calcscore.preprocess", "CALCIUM_THRESHOLD_HU", constants.CALCIUM_THRESHOLD_HU),
        ("calcscore.preprocess", "HU_CLIP", constants.HU_CLIP),
        ("calcscore.preprocess", "normalise_hu", constants.normalise_hu),
        ("calcscore.sampling", "PAD_HU", constants.PAD_HU),
        ("calcscore.sampling", "CALCIUM_THRESHOLD_HU", constants.CALCIUM_THRESHOLD_HU),
        ("calcscore.sampling", "BODY_THRESHOLD_HU", constants.CACHE_BODY_THRESHOLD_HU),
        ("calcscore.scoring", "CALCIUM_THRESHOLD_HU", constants.CALCIUM_THRESHOLD_HU),
        ("calcscore.inference", "BODY_THRESHOLD_HU", constants.BODY_THRESHOLD_HU),
        ("calcscore.inference", "DEFAULT_MODEL_DIR", bundle.DEFAULT_MODEL_DIR),
        ("calcscore.inference", "threshold_table", bundle.threshold_table),
        ("calcscore.calibration", "threshold_table", bundle.threshold_table),
        ("calcscore.inference", "autocast", runtime.autocast),
        ("calcscore.inference", "bf16_supported", runtime.bf16_supported),
        ("calcscore.inference", "resolve_precision", runtime.resolve_precision),
        ("calcscore.training", "resolve_device", runtime.resolve_device),
    ],
)
def test_old_names_stay_importable(module, name, value):
    import importlib

    assert getattr(importlib.import_module(module), name) is value


def test_the_numbers_are_the_methods():
    assert (constants.CALCIUM_THRESHOLD_HU, constants.NORM_CENTER, constants.NORM_SCALE) == (
        130.0,
        130.0,
        1130.0,
    )
    assert (constants.PAD_HU, constants.BODY_THRESHOLD_HU, constants.CACHE_BODY_THRESHOLD_HU) == (
        -1000.0,
        -400.0,
        -500.0,
    )
    assert constants.PAD_NORMALISED == -1.0


def test_normalise_hu_gives_the_same_numbers_for_arrays_and_tensors():
    hu = np.array([-3000.0, -1000.0, 0.0, 130.0, 1260.0, 5000.0], np.float32)
    a = constants.normalise_hu(hu)
    t = constants.normalise_hu(torch.from_numpy(hu))
    assert a.dtype == np.float32 and t.dtype == torch.float32
    np.testing.assert_array_equal(a, t.numpy())
    np.testing.assert_array_equal(a, ((np.clip(hu, -1000, 3000) - 130) / 1130).astype(np.float32))


def test_resolve_device():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(CalcscoreError, match="CUDA is not available"):
            runtime.resolve_device("cuda", local_rank=1)
    with pytest.raises(ValueError, match="precision"):
        runtime.resolve_precision("fp16", "cpu")


def test_a_bundle_reads_as_model_load_reads_it(tmp_path):
    from calcscore.inference import Model

    cnn1, cnn2, info, folder = bundle.load_bundle()
    model = Model.load()
    assert folder == bundle.DEFAULT_MODEL_DIR and model.source == str(folder)
    assert (
        model.cnn2_thresholds == info["cnn2_thresholds"] and model.rim_sigmas == info["rim_sigmas"]
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(cnn1.state_dict().values(), model.cnn1.state_dict().values())
    )
    assert cnn2 is not None and not cnn1.training

    bundle.save_network(
        cnn1, {"network": "cnn1", **cnn1.config.to_dict()}, tmp_path / "cnn1.pt", iteration=3
    )
    bundle.write_model_info(tmp_path, {"rim_fill": False})
    copy = Model.load(tmp_path)
    assert copy.cnn2 is None and copy.rim_fill is False and copy.info == {"rim_fill": False}
    with pytest.raises(InputError, match="not a cnn2"):
        bundle.load_network(tmp_path / "cnn1.pt", network="cnn2")
    with pytest.raises(InputError, match="holds no cnn1.pt"):
        Model.load(tmp_path / "nothing")


def test_model_identity_hashes_the_bundle_files(tmp_path):
    import hashlib

    (tmp_path / "cnn1.pt").write_bytes(b"weights-1")
    (tmp_path / "model.json").write_text("{}")
    expected = hashlib.sha256(b"cnn1.ptweights-1model.json{}").hexdigest()
    ident = bundle.model_identity(tmp_path)
    assert ident == {
        "name": f"calcscore-{tmp_path.name}",
        "version": expected[:12],
        "sha256": expected,
        "trained_on": "",
    }
    (tmp_path / "cnn1.pt").write_bytes(b"weights-2")  # other weights: another version
    assert bundle.model_identity(tmp_path)["version"] != expected[:12]
    (tmp_path / "model.json").write_text('{"name": "mine", "version": "2.0", "trained_on": "x"}')
    ident = bundle.model_identity(tmp_path)
    assert (ident["name"], ident["version"], ident["trained_on"]) == ("mine", "2.0", "x")


@pytest.mark.parametrize(
    "lo, hi, n, expected",
    [
        (10, 20, 512, (10, 41)),  # 11 positions -> 32, starting where the span starts
        (500, 505, 512, (480, 511)),  # at the far edge: shifted back inside the axis
        (0, 40, 512, (0, 63)),  # 41 -> 64
        (3, 9, 20, (0, 19)),  # the axis is shorter than a quantum: all of it
        (0, 63, 512, (0, 63)),  # already a multiple: unchanged
    ],
)
def test_bucket_span_widens_to_a_multiple_inside_the_axis(lo, hi, n, expected):
    start, end = runtime.bucket_span(lo, hi, n, quantum=32)
    assert (start, end) == expected
    assert start <= lo and end >= hi and 0 <= start and end < n


def test_bucket_count_and_pad_index():
    assert [runtime.bucket_count(k, 8) for k in range(0, 10)] == [0, 1, 2, 4, 4, 8, 8, 8, 8, 9]
    assert runtime.bucket_count(5, 6) == 6  # a cap that is no power of two caps the rounding
    idx = torch.tensor([4, 7, 9])
    assert runtime.pad_index(idx, 4).tolist() == [4, 7, 9, 9]
    assert runtime.pad_index(idx, 3) is idx


def test_cnn1_features_do_not_depend_on_the_box_widening(monkeypatch):
    """The boxes and batches are widened to few shapes; CNN1 is fully convolutional with valid
    convolutions, so every candidate's features are the same as without widening."""
    from calcscore import inference
    from calcscore.networks import build_network
    from calcscore.training import get_config

    torch.manual_seed(0)
    cnn1 = build_network(
        "cnn1", get_config("workshop", "cnn1", width=4, head_width=8).network_params()
    )
    cnn1.eval()
    r = cnn1.receptive_field // 2 + 1
    norm = torch.randn(12 + 2 * r, 40 + 2 * r, 44 + 2 * r)
    cand = torch.tensor([[1, 5, 7], [1, 30, 40], [6, 12, 3], [11, 39, 43], [7, 20, 20]])
    opts = inference.InferenceOptions(device="cpu", batch_slices=4, batch_voxels=3)
    widened = inference.cnn1_proba(cnn1, norm, cand, r, opts)
    monkeypatch.setattr(inference, "bucket_span", lambda lo, hi, n: (lo, hi))
    monkeypatch.setattr(inference, "bucket_count", lambda k, cap: k)
    exact = inference.cnn1_proba(cnn1, norm, cand, r, opts)
    assert torch.allclose(widened, exact, atol=1e-5)


def test_steady_memory_caps_onednn_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    done = runtime.steady_memory()
    assert done["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == runtime.ONEDNN_CACHE_KERNELS
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == runtime.ONEDNN_CACHE_KERNELS
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in runtime.steady_memory()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"
