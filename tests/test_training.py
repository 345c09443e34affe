"""Training: loss goes down, checkpoints resume exactly, models reload, CNN2 trains on CNN1."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from calcscore.errors import CalcscoreError
from calcscore.labels import Label
from calcscore.networks import CNN1, CNN2
from calcscore.sampling import cache_scan
from calcscore.training import (
    TrainConfig,
    get_config,
    load_model,
    paper_config,
    split_by_participant,
    train,
    workshop_config,
)
from calcscore.volume import CTVolume, LabelVolume

SHAPE = (20, 36, 36)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_scan(rng, shape=SHAPE) -> tuple[CTVolume, LabelVolume]:
    """A network-grid phantom: soft tissue, a bone block (background >= 130 HU) and small
    calcified spheres, LAD ones free in fat and TAC ones on an aortic wall."""
    rng = np.random.default_rng(rng)
    z, y, x = np.indices(shape)
    hu = np.full(shape, -50.0) + rng.normal(0, 15, shape)
    lab = np.zeros(shape, np.uint8)
    hu[:, 28:, 6:30] = 700 + rng.normal(0, 30, (shape[0], shape[1] - 28, 24))  # spine-like block
    cy, cx = 12, 24  # aorta along z
    wall = np.abs(np.hypot(y - cy, x - cx) - 5) < 1.2
    hu[wall] = 60
    for _ in range(4):
        c = (rng.integers(3, shape[0] - 3), rng.integers(4, 22), rng.integers(3, 14))
        ball = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 2.5
        hu[ball], lab[ball] = 450, Label.LAD
        a = rng.uniform(0, 2 * np.pi)
        c = (rng.integers(3, shape[0] - 3), int(cy + 5 * np.sin(a)), int(cx + 5 * np.cos(a)))
        ball = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 2.5
        hu[ball], lab[ball] = 600, Label.TAC
    vol = CTVolume(hu.astype(np.float32), (1.5, 0.66, 0.66))
    return vol, LabelVolume.like(vol, lab)


def tiny_scans(folder: Path, n: int, *, seed: int = 0, prefix: str = "s"):
    out = []
    for i in range(n):
        vol, lab = tiny_scan(seed * 100 + i)
        out.append(
            cache_scan(
                vol,
                lab,
                folder / f"{prefix}{i}",
                scan_id=f"{prefix}{i}",
                participant_id=f"p{i}",
                on_network_grid=True,
            )
        )
    return out


def tiny_config(network: str = "cnn1", **changes) -> TrainConfig:
    if network == "cnn1":
        base = TrainConfig(
            network="cnn1",
            width=4,
            head_width=8,
            max_dilation=2,
            patch_size=15,
            batch_size=8,
            max_iterations=6,
            eval_every=3,
            checkpoint_every=3,
            val_samples=16,
            device="cpu",
            preset="test",
        )
    else:
        base = TrainConfig(
            network="cnn2",
            patch_size=25,
            width_scale=0.25,
            dense_width=8,
            dropout=0.5,
            l2=1e-5,
            batch_size=8,
            max_iterations=4,
            eval_every=2,
            checkpoint_every=2,
            val_samples=16,
            device="cpu",
            preset="test",
        )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    return tiny_scans(d, 3, prefix="t"), tiny_scans(d, 1, seed=9, prefix="v")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_presets_carry_the_paper_settings():
    c1, c2 = paper_config("cnn1"), paper_config("cnn2")
    assert (c1.learning_rate, c1.batch_size, c1.gamma, c1.l2, c1.dropout) == (
        5e-4,
        64,
        0.05,
        5e-5,
        0.35,
    )
    assert (c1.receptive_field, c1.patch_size, c1.label_size, c1.width) == (131, 155, 25, 32)
    assert (c2.patch_size, c2.l2, c2.dropout, c2.batch_size) == (65, 1e-5, 0.5, 64)
    w = workshop_config("cnn1")
    assert w.receptive_field in (35, 67) and w.width < 32 and w.patch_size < 155
    assert get_config("workshop", "cnn2", max_iterations=5).max_iterations == 5
    with pytest.raises(ValueError, match="patch_size"):
        TrainConfig(network="cnn1", max_dilation=8, patch_size=36)
    with pytest.raises(ValueError, match="preset"):
        get_config("huge", "cnn1")


def test_split_by_participant_keeps_participants_together():
    parts = ["a", "a", "b", "c", "c", "d", "e", "f", "g"]
    val = split_by_participant(parts, val_fraction=0.3, rng=1)
    assert len(val) == 2 and val <= set(parts)
    assert split_by_participant(parts, val_fraction=0.3, rng=1) == val
    assert split_by_participant(["a", "a"], val_fraction=0.5, rng=0) == set()


def test_split_manifest_uses_the_split_column_or_participants():
    import pandas as pd

    from calcscore.errors import InputError
    from calcscore.training import split_manifest

    df = pd.DataFrame(
        {
            "scan_id": list("abcdef"),
            "participant_id": ["1", "1", "2", "3", "4", "4"],
            "split": ["train", "train", "val", "test", None, "Train"],
        }
    )
    tr, va = split_manifest(df, val_fraction=0.5, rng=0)
    assert list(tr.scan_id) == ["a", "b", "e", "f"] and list(va.scan_id) == ["c"]
    tr, va = split_manifest(df.drop(columns="split"), val_fraction=0.5, rng=0)
    assert len(va) and set(tr.participant_id).isdisjoint(va.participant_id)
    assert len(tr) + len(va) == 6
    with pytest.raises(InputError, match="both"):
        split_manifest(
            df.assign(split=["train", "val", "val", "test", "train", "train"]), val_fraction=0.1
        )
    with pytest.raises(InputError, match="split column"):
        split_manifest(df.assign(split="holdout"), val_fraction=0.1)


def test_a_few_iterations_lower_the_loss(scans, tmp_path):
    train_scans, val_scans = scans
    cfg = tiny_config(
        max_iterations=60,
        eval_every=20,
        checkpoint_every=60,
        val_samples=64,
        batch_size=16,
        learning_rate=3e-3,
    )
    losses = []
    result = train(
        cfg,
        train_scans,
        val_scans,
        tmp_path,
        progress=False,
        callback=lambda it, loss: losses.append(loss),
    )
    assert len(losses) == 60
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:15])
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [20, 40, 60]
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert all(math.isfinite(float(r["val_accuracy"])) for r in rows)
    model, config = load_model(tmp_path)
    assert isinstance(model, CNN1) and config == cfg and not model.training
    saved = torch.load(result.model_path, weights_only=True)
    assert set(saved) >= {"config", "state_dict"} and saved["config"]["network"] == "cnn1"
    assert result.best_val_loss == pytest.approx(min(float(r["val_loss"]) for r in rows))


class _Killed(Exception):
    pass


def test_killed_and_resumed_run_ends_with_the_same_weights(scans, tmp_path):
    train_scans, val_scans = scans
    cfg = tiny_config(max_iterations=9, eval_every=2, checkpoint_every=3)
    full = train(cfg, train_scans, val_scans, tmp_path / "full", progress=False)

    def kill_at_7(it, loss):  # dies after the checkpoint of iteration 6, before 9
        if it == 7:
            raise _Killed

    with pytest.raises(_Killed):
        train(cfg, train_scans, val_scans, tmp_path / "resumed", progress=False, callback=kill_at_7)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["iteration"] == 6
    resumed = train(cfg, train_scans, val_scans, tmp_path / "resumed", progress=False)
    assert resumed.iteration == full.iteration == 9
    a, b = (
        _weights(tmp_path / "full" / "checkpoint.pt"),
        _weights(tmp_path / "resumed" / "checkpoint.pt"),
    )
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fa = torch.load(full.model_path, weights_only=True)["state_dict"]
    fb = torch.load(resumed.model_path, weights_only=True)["state_dict"]
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    rows_a = _rows(tmp_path / "full" / "metrics.csv")
    rows_b = _rows(tmp_path / "resumed" / "metrics.csv")
    assert [r["val_loss"] for r in rows_a] == [r["val_loss"] for r in rows_b]
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]


def test_the_checkpoint_names_its_best_score_and_old_checkpoints_still_resume(scans, tmp_path):
    """checkpoint.pt keeps the kept weights' selection score as ``best_score`` beside its metric
    (minus the balanced accuracy here); a checkpoint from before, which held the same number as
    ``best_val_loss``, resumes to the same weights."""
    train_scans, val_scans = scans
    cfg = tiny_config(
        max_iterations=9, eval_every=2, checkpoint_every=3, select_by="val_balanced_accuracy"
    )
    full = train(cfg, train_scans, val_scans, tmp_path / "full", progress=False)
    ckpt = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert ckpt["select_by"] == "val_balanced_accuracy" and "best_val_loss" not in ckpt
    assert ckpt["best_score"] == -max(r["val_balanced_accuracy"] for r in full.metrics)

    def kill_at_7(it, loss):
        if it == 7:
            raise _Killed

    with pytest.raises(_Killed):
        train(cfg, train_scans, val_scans, tmp_path / "old", progress=False, callback=kill_at_7)
    path = tmp_path / "old" / "checkpoint.pt"
    old = torch.load(path, weights_only=True)
    old["best_val_loss"] = old.pop("best_score")
    del old["select_by"]
    torch.save(old, path)
    resumed = train(cfg, train_scans, val_scans, tmp_path / "old", progress=False)
    a, b = _weights(tmp_path / "full" / "checkpoint.pt"), _weights(path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(path, weights_only=True)["best_score"] == ckpt["best_score"]
    assert [(r["iteration"], r["val_loss"]) for r in resumed.metrics] == [
        (r["iteration"], r["val_loss"]) for r in full.metrics
    ]


def test_a_spent_time_budget_stops_resumably_and_going_on_gives_the_same_weights(scans, tmp_path):
    train_scans, val_scans = scans
    cfg = tiny_config(max_iterations=9, eval_every=3, checkpoint_every=3)
    train(cfg, train_scans, val_scans, tmp_path / "full", progress=False)
    # a budget of 0 s is spent after the first iteration: validate, checkpoint, stop
    part = train(cfg, train_scans, val_scans, tmp_path / "budget", progress=False, max_seconds=0.0)
    assert part.iteration == 1
    assert torch.load(tmp_path / "budget" / "checkpoint.pt", weights_only=True)["iteration"] == 1
    assert [int(r["iteration"]) for r in _rows(tmp_path / "budget" / "metrics.csv")] == [1]
    rest = train(cfg, train_scans, val_scans, tmp_path / "budget", progress=False)
    assert rest.iteration == 9
    a, b = (
        _weights(tmp_path / "full" / "checkpoint.pt"),
        _weights(tmp_path / "budget" / "checkpoint.pt"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = _rows(tmp_path / "budget" / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 3, 6, 9]
    assert [r["val_loss"] for r in rows[1:]] == [
        r["val_loss"] for r in _rows(tmp_path / "full" / "metrics.csv")
    ]


def test_resume_refuses_other_settings(scans, tmp_path):
    train_scans, val_scans = scans
    train(tiny_config(max_iterations=3), train_scans, val_scans, tmp_path, progress=False)
    with pytest.raises(CalcscoreError, match="learning_rate"):
        train(
            tiny_config(max_iterations=6, learning_rate=1e-2),
            train_scans,
            val_scans,
            tmp_path,
            progress=False,
        )


def test_the_saved_model_is_the_best_by_the_chosen_score(scans, tmp_path):
    train_scans, val_scans = scans
    cfg = tiny_config(max_iterations=8, eval_every=2, select_by="val_balanced_accuracy")
    res = train(cfg, train_scans, val_scans, tmp_path, progress=False)
    rows = _rows(tmp_path / "metrics.csv")
    best = max(rows, key=lambda r: float(r["val_balanced_accuracy"]))
    saved = torch.load(res.model_path, weights_only=True)
    assert saved["iteration"] == int(best["iteration"])
    assert res.best_val_loss == pytest.approx(float(best["val_loss"]))
    with pytest.raises(ValueError, match="select_by"):
        tiny_config(select_by="f1")


def test_bf16_autocast_trains(scans, tmp_path):
    train_scans, val_scans = scans
    res = train(
        tiny_config(max_iterations=2, eval_every=2, precision="bf16", channels_last=True),
        train_scans,
        val_scans,
        tmp_path,
        progress=False,
    )
    assert math.isfinite(res.metrics[-1]["train_loss"])


def test_cnn2_trains_on_the_voxels_cnn1_calls_calcium(scans, tmp_path):
    train_scans, val_scans = scans
    train(
        tiny_config(
            max_iterations=30, eval_every=30, checkpoint_every=30, learning_rate=3e-3, batch_size=16
        ),
        train_scans,
        val_scans,
        tmp_path / "cnn1",
        progress=False,
    )
    cfg2 = tiny_config("cnn2")
    with pytest.raises(CalcscoreError, match="CNN1"):
        train(cfg2, train_scans, val_scans, tmp_path / "cnn2", progress=False)
    res = train(
        cfg2, train_scans, val_scans, tmp_path / "cnn2", cnn1=tmp_path / "cnn1", progress=False
    )
    assert (tmp_path / "cnn2" / "cnn1-candidates.npz").is_file()
    model, config = load_model(tmp_path / "cnn2", network="cnn2")
    assert isinstance(model, CNN2) and config.network == "cnn2"
    assert res.iteration == 4


def write_manifest(folder: Path, n: int) -> Path:
    """A manifest of n tiny annotated scans written as NIfTI (needs SimpleITK)."""
    pytest.importorskip("SimpleITK")
    from calcscore.io import write_labels, write_volume

    rows = ["scan_id,participant_id,image,labels,kernel,scanner"]
    for i in range(n):
        vol, lab = tiny_scan(50 + i)
        write_volume(vol, folder / f"scan{i}.nii.gz")
        write_labels(lab, folder / f"scan{i}_labels.nii.gz")
        rows.append(f"scan{i},p{i // 2},scan{i}.nii.gz,scan{i}_labels.nii.gz,soft,test")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


@pytest.mark.slow
def test_cli_trains_cnn1_then_cnn2_and_resumes(scans, tmp_path, capsys):
    from calcscore.cli import main

    manifest = write_manifest(tmp_path, 4)
    out1, out2 = tmp_path / "m1", tmp_path / "m2"
    assert (
        main(
            [
                "train",
                "cnn1",
                "--data",
                str(manifest),
                "--out",
                str(out1),
                "--config",
                "workshop",
                "--max-iterations",
                "2",
                "--batch-size",
                "4",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "cnn1: 2 iterations" in capsys.readouterr().out
    assert (out1 / "cnn1.pt").is_file() and (out1 / "metrics.csv").is_file()
    assert len(list((out1 / "cache").iterdir())) == 4
    stamp = (out1 / "cache" / "scan0" / "meta.json").stat().st_mtime_ns
    # a second call with a larger budget resumes from iteration 2
    assert (
        main(
            [
                "train",
                "cnn1",
                "--data",
                str(manifest),
                "--out",
                str(out1),
                "--config",
                "workshop",
                "--max-iterations",
                "3",
                "--batch-size",
                "4",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert torch.load(out1 / "checkpoint.pt", weights_only=True)["iteration"] == 3
    assert (out1 / "cache" / "scan0" / "meta.json").stat().st_mtime_ns == stamp  # cache reused
    assert (
        main(
            [
                "train",
                "cnn2",
                "--data",
                str(manifest),
                "--out",
                str(out2),
                "--config",
                "workshop",
                "--max-iterations",
                "1",
                "--batch-size",
                "4",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--cnn1" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "cnn2",
                "--data",
                str(manifest),
                "--out",
                str(out2),
                "--cnn1",
                str(out1),
                "--config",
                "workshop",
                "--max-iterations",
                "1",
                "--batch-size",
                "4",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    model, config = load_model(out2)
    assert isinstance(model, CNN2) and config.preset == "workshop"
    assert not (out2 / "cache").exists()  # reused CNN1's cache
    # fine-tuning: --init starts from a saved CNN2, and refuses a CNN1 with a clear message
    tune = [
        "train",
        "cnn2",
        "--data",
        str(manifest),
        "--out",
        str(tmp_path / "m3"),
        "--cnn1",
        str(out1),
        "--config",
        "workshop",
        "--max-iterations",
        "1",
        "--batch-size",
        "4",
        "--no-progress",
        "--device",
        "cpu",
        "--init",
    ]
    capsys.readouterr()
    assert main(tune + [str(out1 / "cnn1.pt")]) == 2
    err = capsys.readouterr().err
    assert "cnn1.pt" in err and "holds a cnn1, not a cnn2" in err and "Traceback" not in err
    assert main(tune[:-1] + ["--learning-rate", "0", "--init", str(out2 / "cnn2.pt")]) == 2
    assert "--learning-rate must be > 0" in capsys.readouterr().err
    assert main(tune[:-1] + ["--learning-rate", "1e-4", "--init", str(out2 / "cnn2.pt")]) == 0
    assert torch.load(tmp_path / "m3" / "cnn2.pt", weights_only=True)["initialised_from"] == str(
        out2 / "cnn2.pt"
    )
    assert load_model(tmp_path / "m3")[1].learning_rate == 1e-4 and config.learning_rate == 5e-4
    # a CNN1 whose dilations are not the preset's: its architecture comes with it
    wide = tmp_path / "wide.pt"
    saved = torch.load(out1 / "cnn1.pt", weights_only=True)
    train(
        TrainConfig.from_dict(
            {
                **saved["config"],
                "max_dilation": 4,
                "patch_size": 29,
                "max_iterations": 1,
                "batch_size": 4,
            }
        ),
        *scans,
        tmp_path / "w",
        progress=False,
    )
    (tmp_path / "w" / "cnn1.pt").rename(wide)
    assert (
        main(
            [
                "train",
                "cnn1",
                "--data",
                str(manifest),
                "--out",
                str(tmp_path / "m4"),
                "--config",
                "workshop",
                "--max-iterations",
                "1",
                "--batch-size",
                "4",
                "--no-progress",
                "--device",
                "cpu",
                "--init",
                str(wide),
            ]
        )
        == 0
    )
    assert load_model(tmp_path / "m4")[1].max_dilation == 4


def test_slicewise_cnn1_matches_patchwise(scans):
    """The fully convolutional candidate labelling used for CNN2's training data gives the
    probabilities of one patch per voxel (and so shares the patches' orientation convention)."""
    from calcscore.sampling import VolumeStore
    from calcscore.training import cnn1_candidate_labels, cnn1_proba_patchwise, cnn1_proba_slicewise

    torch.manual_seed(3)
    model = CNN1(width=3, head_width=6, max_dilation=4)  # receptive field 19
    store = VolumeStore(scans[0][:2])
    flat = np.asarray(store.scans[1].candidate_index)
    flat = np.concatenate([flat[::7], [0, store.scans[1].n_voxels - 1]])  # incl. corner voxels
    a = cnn1_proba_patchwise(model, store, 1, flat, batch_size=64)
    b = cnn1_proba_slicewise(model, store, 1, flat)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    cand, labels = cnn1_candidate_labels(model, store, 0)
    np.testing.assert_array_equal(cand, store.scans[0].candidate_index)
    assert labels.shape == cand.shape and labels.max() < 7


_KILL_SCRIPT = """
import json, sys, time
import torch
from calcscore.sampling import load_cached
from calcscore.training import TrainConfig, train
torch.set_num_threads(1)
args = json.loads(sys.argv[1])
train(TrainConfig.from_dict(args["config"]), [load_cached(p) for p in args["train"]],
      [load_cached(p) for p in args["val"]], args["out"], progress=False,
      callback=lambda it, loss: time.sleep(0.05))
"""


@pytest.mark.slow
def test_sigkilled_process_resumes_to_the_same_weights(scans, tmp_path):
    """A real SIGKILL at an arbitrary moment (after at least one checkpoint), then a resume."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    train_scans, val_scans = scans
    cfg = tiny_config(max_iterations=40, eval_every=5, checkpoint_every=4)
    args = {
        "config": cfg.to_dict(),
        "train": [str(s.folder) for s in train_scans],
        "val": [str(s.folder) for s in val_scans],
        "out": str(tmp_path / "killed"),
    }
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, json.dumps(args)])
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.is_file() and torch.load(ckpt, weights_only=True)["iteration"] >= 8:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    killed_at = torch.load(ckpt, weights_only=True)["iteration"]
    assert 8 <= killed_at < 40
    resumed = train(cfg, train_scans, val_scans, tmp_path / "killed", progress=False)
    full = train(cfg, train_scans, val_scans, tmp_path / "full", progress=False)
    assert resumed.iteration == full.iteration == 40
    a, b = _weights(tmp_path / "full" / "checkpoint.pt"), _weights(ckpt)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_from_saved_weights_starts_there_and_keeps_them_unless_beaten(scans, tmp_path):
    train_scans, val_scans = scans
    cfg = tiny_config(max_iterations=6, eval_every=3)
    first = train(cfg, train_scans, val_scans, tmp_path / "first", progress=False)
    start = torch.load(first.model_path, weights_only=True)["state_dict"]
    # zero learning rate: the weights cannot move, so every validation equals the starting one
    # and the kept model is iteration 0, i.e. the given weights
    frozen = replace(cfg, learning_rate=0.0, l2=0.0)
    res = train(
        frozen, train_scans, val_scans, tmp_path / "frozen", init=first.model_path, progress=False
    )
    rows = _rows(tmp_path / "frozen" / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [0, 3, 6]
    assert float(rows[0]["val_loss"]) == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-5)
    saved = torch.load(res.model_path, weights_only=True)
    assert saved["iteration"] == 0 and saved["initialised_from"] == str(first.model_path)
    assert all(torch.equal(saved["state_dict"][k], start[k]) for k in start if "running" not in k)
    # with learning, the run starts from the given weights (iteration-0 loss = the first run's kept loss)
    res = train(
        cfg, train_scans, val_scans, tmp_path / "tuned", init=tmp_path / "first", progress=False
    )
    rows = _rows(tmp_path / "tuned" / "metrics.csv")
    assert float(rows[0]["val_loss"]) == pytest.approx(first.best_val_loss, rel=1e-5)
    assert res.iteration == 6


def test_training_from_saved_weights_refuses_another_network_or_architecture(scans, tmp_path):
    train_scans, val_scans = scans
    first = train(
        tiny_config(max_iterations=3), train_scans, val_scans, tmp_path / "first", progress=False
    )
    with pytest.raises(CalcscoreError, match=r"first.*cnn1\.pt.*architecture.*width"):
        train(
            tiny_config(width=6, max_iterations=3),
            train_scans,
            val_scans,
            tmp_path / "wide",
            init=first.model_path,
            progress=False,
        )
    with pytest.raises(CalcscoreError, match="holds a cnn1, not a cnn2"):
        train(
            tiny_config("cnn2"),
            train_scans,
            val_scans,
            tmp_path / "c2",
            cnn1=tmp_path / "first",
            init=first.model_path,
            progress=False,
        )
    with pytest.raises(CalcscoreError, match="no such model file"):
        train(
            tiny_config(),
            train_scans,
            val_scans,
            tmp_path / "x",
            init=tmp_path / "missing.pt",
            progress=False,
        )


def test_auxiliary_loss_skips_ignored_pixels():
    """The auxiliary loss of a patch whose pixels are partly IGNORE equals the loss over the
    labelled pixels alone (computed by hand), and a patch of only IGNORE costs nothing."""
    import torch
    import torch.nn.functional as F

    from calcscore.labels import IGNORE
    from calcscore.training.steps import label_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 5, 5, generator=g)
    target = torch.randint(0, 7, (2, 5, 5), generator=g)
    assert torch.allclose(label_loss(logits, target), F.cross_entropy(logits, target))
    target[0, :3] = IGNORE
    keep = target != IGNORE
    by_hand = (
        -F.log_softmax(logits, dim=1).gather(1, target.clamp(max=6)[:, None])[:, 0][keep].mean()
    )
    assert torch.allclose(label_loss(logits, target), by_hand)
    assert float(label_loss(logits, torch.full_like(target, IGNORE))) == 0.0


def test_coronary_target_asks_for_any_artery():
    """A CORONARY target (coronary calcium, artery not given) costs -log(p_LAD + p_LCX + p_RCA),
    computed by hand from the softmax; it does not care which artery gets the probability (the
    loss is the same when the three artery logits are permuted); IGNORE still counts for
    nothing; and its gradient leaves the split between the arteries where it was."""
    import torch

    from calcscore.labels import CORONARY, IGNORE
    from calcscore.training.steps import label_loss

    logits = torch.tensor(
        [
            [0.5, 2.0, -1.0, 0.3, 1.0, 0.0, -0.5],
            [1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0],
            [0.0, 1.0, 1.0, 1.0, 3.0, 0.0, 0.0],
        ]
    )
    target = torch.tensor([CORONARY, 5, IGNORE])
    p = torch.softmax(logits, dim=1)
    by_hand = (-torch.log(p[0, 1:4].sum()) - torch.log(p[1, 5])) / 2
    assert torch.allclose(label_loss(logits, target), by_hand)
    permuted = logits[:, [0, 3, 1, 2, 4, 5, 6]]
    assert torch.allclose(label_loss(permuted, target), by_hand)
    # on an aux-shaped (N, C, H, W) input too
    grid = logits[:2, :, None, None].expand(2, 7, 2, 2).clone().requires_grad_(True)
    loss = label_loss(grid, target[:2, None, None].expand(2, 2, 2))
    assert torch.allclose(loss, by_hand)
    loss.backward()
    g = grid.grad[0, 1:4, 0, 0]
    # d/dz_k of -log(sum_{j in CAC} p_j) is p_k - p_k / P(CAC) ... proportional to p_k: the
    # arteries' logits all move by the same share, so their ratios p_LAD : p_LCX : p_RCA stay
    share = g / p[0, 1:4]
    assert torch.allclose(share, share[0].expand(3), atol=1e-6)


def test_a_checkpoint_from_before_a_new_setting_resumes_at_its_default(tmp_path):
    """A checkpoint written before ``z_crop_mm`` existed resumes when the run keeps its default;
    one written with other ends is refused, naming the setting."""
    from calcscore.errors import CalcscoreError
    from calcscore.training.checkpoint import _check_resumable
    from calcscore.training.config import get_config

    config = get_config("workshop", "cnn1", z_crop=0.5)
    old = {k: v for k, v in config.to_dict().items() if k != "z_crop_mm"}
    _check_resumable(old, config, tmp_path / "checkpoint.pt")
    # settings that went through JSON (lists for tuples) are the same settings
    as_json = json.loads(json.dumps(config.to_dict()))
    _check_resumable(as_json, TrainConfig.from_dict(as_json), tmp_path / "checkpoint.pt")
    _check_resumable(as_json, config, tmp_path / "checkpoint.pt")
    with pytest.raises(CalcscoreError, match=r"z_crop_mm: checkpoint \(5, 60\)"):
        _check_resumable({**old, "z_crop_mm": (5, 60)}, config, tmp_path / "checkpoint.pt")
