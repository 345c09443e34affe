"""scripts/build_default_model.py and write_model_card.py end to end at a tiny size (the GPU run
uses the same script with --preset paper --device cuda)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from calcscore.inference import Model

ROOT = Path(__file__).resolve().parents[1]


def _defined(x) -> bool:
    """A figure of model.json that is defined (undefined ones are JSON null, e.g. no reference calcium)."""
    return x is not None and bool(np.isfinite(x))


NAMES = ["background", "LAD", "LCX", "RCA", "TAC", "AV", "MV"]


def test_gpu_build_script_trains_evaluates_benchmarks_and_writes_a_model_card(tmp_path):
    """scripts/gpu_build.sh (the one device call) on the CPU at a tiny size."""
    env = dict(os.environ, OUT=str(tmp_path / "out"), WORK=str(tmp_path / "work"), DEVICE="cpu",
               PRESET="workshop", N_TRAIN="3", N_FULL="0", TRAIN_SIZE="small", N_TEST="1", TEST_SIZE="small",
               CNN1_IT="4", CNN2_IT="4", CNN2_SCANS="2", MAX_DILATION="4", WORKERS="2", THREADS="1", CALIBRATE="1",
               BENCH_SLICES="12", BENCH_VOXELS="20", BENCH_VARIANTS="patch_per_voxel,bf16_channels_last",
               PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_build.sh")], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:] + (tmp_path / "out" / "build.log").read_text()[-3000:]
    out = tmp_path / "out" / "model"
    bench = (tmp_path / "out" / "bench_inference.txt").read_text()
    assert "512 x 512 x 12" in bench and "bf16_channels_last" in bench and "x (baseline)" in bench
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "MODEL_CARD.md", "bench_inference.txt", "build.log", "cnn1.pt", "cnn1_metrics.csv", "cnn2.pt",
        "cnn2_metrics.csv", "model.json"]
    model = Model.load(out)
    assert model.cnn1.receptive_field == 4 * 4 + 3
    info = json.loads((out / "model.json").read_text())
    assert info["cnn1_config"]["patch_size"] == 4 * 4 + 3 + 10 and info["cnn1_config"]["max_iterations"] == 4
    assert "--max-dilation 4" in info["command"] and info["trained_on"].startswith("synthetic phantoms only")
    for kernel in ("soft", "sharp"):
        m = info["test_metrics"][kernel]
        assert m["n_scans"] == 1
        conf = np.array(m["label_confusion_mm3"])
        assert conf.shape == (7, 7) and conf[0, 0] == 0
        # rows of the confusion are the reference volumes of the evaluation (one scan)
        for i, name in enumerate(NAMES[1:], start=1):
            np.testing.assert_allclose(conf[i].sum(), m[name]["ref_volume_mm3_mean"], atol=0.2)
        # CNN2 only removes: sensitivity never rises, FP volume never rises
        a, b = m["cnn1_alone"]["all_calcium"], m["all_calcium"]
        assert b["fp_volume_mm3_mean"] <= a["fp_volume_mm3_mean"] + 1e-9
        if _defined(a["sensitivity_pooled"]):
            assert b["sensitivity_pooled"] <= a["sensitivity_pooled"] + 1e-9
        # CNN2 at the paper's 0.5 only removes too; the thresholds come from the validation scans
        for g, r in m["cnn2_at_0.5"].items():
            if _defined(m["cnn1_alone"].get(g, {}).get("sensitivity_pooled")):
                assert r["sensitivity_pooled"] <= m["cnn1_alone"][g]["sensitivity_pooled"] + 1e-9
    assert set(info["cnn2_thresholds"]) == {"CAC", "TAC", "AV", "MV"}
    assert all(0.05 <= t <= 0.95 for t in info["cnn2_thresholds"].values())
    val = set(info["training_participants"]["validation"])
    assert info["cnn2_calibration"]["scans"] and all(s.split("_")[0] in val for s in info["cnn2_calibration"]["scans"])
    assert Model.load(out).cnn2_thresholds == info["cnn2_thresholds"]
    # the rim fill's margin, chosen on validation participants, reaches the model
    assert info["rim_choice"]["participants"] and set(info["rim_choice"]["participants"]) <= val
    assert [r["rim_sigmas"] for r in info["rim_choice"]["table"]] == ["no fill", 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0]
    assert Model.load(out).rim_fill == info["rim_fill"] == (info["rim_sigmas"] is not None)
    assert Model.load(out).rim_sigmas == info["rim_sigmas"]
    assert set(info["test_metrics"]["soft"]["without_rim_fill"]) == {"CAC", "TAC", "AV", "MV"}
    card = (out / "MODEL_CARD.md").read_text()
    assert "| margin (noise SDs) |" in card and "without the rim fill -> with it" in card
    assert "CNN2's threshold per label group" in card
    assert "learned from synthetic phantoms only" in card
    assert "receptive field 19 px" in card and "Label confusion, soft" in card and "CNN1 alone" in card
    assert "--max-dilation 4" in card

    # --cnn1-init: fine-tune that CNN1 on the cached cohort (its own settings, not the preset's)
    again = tmp_path / "again"
    (tmp_path / "work2").mkdir()
    (tmp_path / "work2" / "cache").symlink_to(tmp_path / "work" / "cache")  # the same cohort, no regeneration
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_default_model.py"), "--out", str(again),
                          "--work", str(tmp_path / "work2"), "--preset", "paper", "--n-train", "3", "--n-full", "0",
                          "--train-size", "small", "--n-test", "1", "--test-size", "small",
                          "--cnn1-init", str(out / "cnn1.pt"), "--cnn1-iterations", "2",
                          "--cnn2-init", str(out / "cnn2.pt"), "--cnn2-iterations", "2", "--cnn2-scans", "2",
                          "--learning-rate", "1e-4", "--workers", "1", "--threads", "1", "--train-only"],
                         capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, TQDM_DISABLE="1"))
    assert run.returncode == 0, run.stderr[-3000:]
    info2 = json.loads((again / "model.json").read_text())
    assert info2["cnn1_initialised_from"] == str(out / "cnn1.pt") and info2["trained_iterations"]["cnn1"] == 2
    assert info2["cnn1_config"]["patch_size"] == 4 * 4 + 3 + 10 and info2["cnn1_config"]["max_iterations"] == 2
    assert info2["cnn1_config"]["precision"] in ("fp32", "bf16")  # --precision auto resolved
    # the fine-tuning learning rate reaches both networks (the presets' and the saved CNN1's is 5e-4)
    assert info2["cnn1_config"]["learning_rate"] == info2["cnn2_config"]["learning_rate"] == 1e-4
    assert info["cnn1_config"]["learning_rate"] == 5e-4
    curve = (again / "cnn1_metrics.csv").read_text().splitlines()
    assert curve[1].startswith("0,") and curve[-1].startswith("2,")  # the starting weights validated first
    assert Model.load(again).cnn1.receptive_field == 4 * 4 + 3


def test_gpu_session_script_benchmarks_and_trains_both_candidates(tmp_path):
    """scripts/gpu_session.sh (the device call of 2026-11-27) on the CPU at a tiny size: the
    bench of the shipped model, candidate A (the paper's CNN2 after the shipped CNN1) and
    candidate B (a new CNN1 and the paper's CNN2), each packed for the trip back."""
    import tarfile

    import torch

    env = dict(os.environ, OUT=str(tmp_path / "out"), WORK=str(tmp_path / "work"), DEVICE="cpu", TINY="1",
               PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_session.sh")], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    log = (tmp_path / "out" / "log.txt").read_text()
    assert run.returncode == 0, run.stderr[-3000:] + log[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "A.tgz", "B.tgz", "bench_B.txt", "bench_shipped.txt", "log.txt"]
    assert "512 x 512 x 12" in (tmp_path / "out" / "bench_shipped.txt").read_text()
    for name in ("A", "B"):
        with tarfile.open(tmp_path / "out" / f"{name}.tgz") as tar:
            tar.extractall(tmp_path / "back", filter="data")
        info = json.loads((tmp_path / "back" / name / "model.json").read_text())
        assert info["cnn2_config"]["width_scale"] == 1.0 and info["cnn2_config"]["dense_width"] == 256
        assert info["cnn2_config"]["batch_size"] == 64 and "test_metrics" not in info
        assert Model.load(tmp_path / "back" / name).cnn2.config.dense_width == 256
    shipped = torch.load(ROOT / "calcscore" / "models" / "default" / "cnn1.pt", weights_only=True)["state_dict"]
    a = torch.load(tmp_path / "back" / "A" / "cnn1.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(shipped[k], a[k]) for k in shipped)  # A keeps the shipped CNN1
    info_a = json.loads((tmp_path / "back" / "A" / "model.json").read_text())
    info_b = json.loads((tmp_path / "back" / "B" / "model.json").read_text())
    assert info_a["trained_iterations"] == {"cnn2": 3} and info_b["trained_iterations"] == {"cnn1": 3, "cnn2": 3}
    assert info_b["cnn1_config"]["batch_size"] == 64 and info_b["cnn1_config"]["max_dilation"] == 4
    # both split the participants alike
    assert info_a["training_participants"]["validation"] == info_b["training_participants"]["validation"]


def test_build_script_and_benchmark_import_without_what_gpu_machines_lack():
    """GPU machines have torch, numpy, scipy, pandas, statsmodels, tqdm, matplotlib but not
    SimpleITK, ipywidgets, papermill, highdicom (GPU_NOTES); pydicom and nibabel may be missing too."""
    code = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"SimpleITK", "ipywidgets", "papermill", "highdicom", "pydicom", "nibabel"}:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
for script in ("scripts/build_default_model.py", "benchmarks/bench_inference.py"):
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        assert e.code == 0, e.code
import calcscore.inference, calcscore.training, calcscore.metrics, calcscore.phantom  # noqa
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_model_card_shows_whole_chest_metrics():
    import runpy

    card = runpy.run_path(str(ROOT / "scripts" / "write_model_card.py"))["card"]
    info = json.loads((ROOT / "calcscore" / "models" / "default" / "model.json").read_text())
    assert "Whole-chest" not in card({k: v for k, v in info.items() if k != "test_metrics_whole_chest"})
    info["test_metrics_whole_chest"] = info["test_metrics"]
    info["test_participants_whole_chest"] = "P0900..P0901 (full)"
    text = card(info)
    assert "Whole-chest scans (P0900..P0901 (full), held out" in text
    soft = info["test_metrics"]["soft"]
    row = [line for line in text.splitlines()[text.splitlines().index(next(
        line for line in text.splitlines() if line.startswith("Whole-chest"))):] if line.startswith("| soft |")][0]
    assert row.startswith(f"| soft | {soft['n_scans']} | {soft['CAC']['f1_pooled']:.2f} | {soft['TAC']['f1_pooled']:.2f} |")
    # the limits follow the whole-chest figures: none where they meet the targets, named where not
    assert all(f["CAC"]["f1_pooled"] >= 0.85 and f["TAC"]["f1_pooled"] >= 0.85 and f["CAC"]["fp_volume_mm3_mean"] < 25
               for f in (info["test_metrics"]["soft"], info["test_metrics"]["sharp"]))
    assert "- Whole-chest scans" not in text
    import copy
    bad = copy.deepcopy(info["test_metrics"])
    bad["soft"]["CAC"].update(f1_pooled=0.5, fp_volume_mm3_mean=2500.0)
    text = card({**info, "test_metrics_whole_chest": bad})
    line = next(x for x in text.splitlines() if x.startswith("- Whole-chest scans"))
    assert "CAC soft 0.50" in line and "2,500 mm³ of non-calcium" in line and "not reliable" in line


def test_model_card_states_targets_missed_and_the_previous_model():
    import runpy

    card = runpy.run_path(str(ROOT / "scripts" / "write_model_card.py"))["card"]
    info = json.loads((ROOT / "calcscore" / "models" / "default" / "model.json").read_text())
    soft = info["test_metrics"]["soft"]
    soft["CAC"]["f1_pooled"], soft["TAC"]["f1_pooled"] = 0.91, 0.5
    info["previous_model"] = {"description": "an older one", "test_metrics": {"soft": {
        "CAC": {"f1_pooled": 0.7, "fp_volume_mm3_mean": 12.0}, "TAC": {"f1_pooled": 0.6}}}}
    text = card(info)
    target = next(line for line in text.splitlines() if "target of a pooled F1 of 0.85" in line)
    assert "TAC soft 0.500" in target and "CAC soft" not in target
    soft["TAC"]["f1_pooled"] = 0.846  # three decimals: "0.85" would read as the target met
    assert "TAC soft 0.846" in next(line for line in card(info).splitlines() if "target of a pooled F1" in line)
    soft["TAC"]["f1_pooled"] = 0.5
    # undefined figures (JSON null: no reference calcium in the test scans) read n/a, no crash
    soft["cnn1_alone"]["all_calcium"]["sensitivity_pooled"] = None
    row = next(line for line in card(info).splitlines() if line.startswith("| soft |") and " / " in line)
    assert row.endswith("| n/a |") and "| n/a / " in row
    soft["cnn1_alone"]["all_calcium"]["sensitivity_pooled"] = 0.9
    # a CNN1 given to the build (--cnn1) was not trained in it: no "CNN1 0.0 min"
    assert info.get("cnn1_given") and "CNN1 given, not trained in this run, CNN2" in text
    given = {k: v for k, v in info.items() if k != "cnn1_given"}
    assert f"CNN1 {info['seconds']['cnn1'] / 60:.1f} min, CNN2" in card(given)
    assert "The model this one replaced (an older one)" in text
    assert "| heart-region | soft | previous | 0.70 | 0.60 | n/a | n/a | 12 |" in text
    # measured on phantoms of an earlier generator: this model's figures on those phantoms beside it
    info["previous_model"].update(phantoms="the phantoms of generator v1", this_model={"test_metrics": {"soft": {
        "CAC": {"f1_pooled": 0.8, "fp_volume_mm3_mean": 3.0}, "TAC": {"f1_pooled": 0.75}}}})
    text = card(info)
    assert "both models measured on the phantoms of generator v1" in text
    assert "| heart-region | soft | this | 0.80 | 0.75 | n/a | n/a | 3 |" in text
    assert "| heart-region | soft | this | 0.91 |" not in text
    del info["previous_model"]
    assert "The model this one replaced" not in card(info)


def test_model_card_states_where_a_continued_cnn2_was_trained():
    import runpy

    card = runpy.run_path(str(ROOT / "scripts" / "write_model_card.py"))["card"]
    info = json.loads((ROOT / "calcscore" / "models" / "default" / "model.json").read_text())
    info["cnn1_origin"] = {"hardware": {"device": "cpu", "cpu": "c", "threads": 2}, "torch": "t1", "seconds_cnn1": 600}
    info["cnn2_origin"] = {"hardware": {"device": "cuda", "cpu": "x", "threads": 16, "gpu": "GPU-X"}, "torch": "t2",
                           "trained_iterations": 1234, "kept_iteration": 1000, "seconds_iterations": 12.0}
    text = card(info)
    assert "started from a CNN2 of the same size trained 1,234 iterations (iteration 1,000 kept) on GPU-X" in text
    assert "CNN2 first on cuda (x, 16 threads); GPU GPU-X, torch t2 (1,234 iterations, 12 s of iterations)" in text
    assert "trained first on a GPU, then longer on the CPU" in text
    # a chain of earlier trainings (oldest first): each stage named, in order
    info["cnn2_origin"] = [info["cnn2_origin"], {
        "hardware": {"device": "cpu", "cpu": "c", "threads": 2}, "torch": "t1", "trained_iterations": 20000,
        "kept_iteration": 17000, "minutes": 88.4, "data": "on heart-region scans"}]
    text = card(info)
    assert ("started from a CNN2 of the same size trained 1,234 iterations (iteration 1,000 kept) on GPU-X, "
            "then 20,000 more (iteration 17,000 kept) on cpu on heart-region scans, then trained further for") in text
    assert ("CNN2 first on cuda (x, 16 threads); GPU GPU-X, torch t2 (1,234 iterations, 12 s of iterations), "
            "then on cpu (c, 2 threads), torch t1 (20,000 iterations, 88 min with labelling the candidates), then on") in text
    del info["cnn2_origin"]
    text = card(info)
    assert "started from" not in text and "CNN2 first on" not in text


def test_cnn2_full_scans_keeps_the_first_whole_chests_and_every_heart_region_scan():
    """build_default_model.py --cnn2-full-scans: CNN1 labels 2-2.5 M candidates per whole chest."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_default_model import _limit_full

    class Scan:
        def __init__(self, scan_id):
            self.scan_id = scan_id

    ids = ["P0000_soft_full", "P0000_sharp_full", "P0001_soft_full", "P0016_soft_medium", "P0001_sharp_full",
           "P0017_sharp_medium"]
    scans = [Scan(i) for i in ids]
    assert [s.scan_id for s in _limit_full(scans, 2)] == [
        "P0000_soft_full", "P0000_sharp_full", "P0016_soft_medium", "P0017_sharp_medium"]
    assert [s.scan_id for s in _limit_full(scans, 0)] == ["P0016_soft_medium", "P0017_sharp_medium"]
    assert _limit_full(scans, 10) == scans and _limit_full(scans, None) is scans


def test_cpu_retrain_script_commands_parse_and_its_table_compares(tmp_path):
    """scripts/cpu_retrain_cnn2.sh: its build commands are valid for build_default_model.py (a dry
    run), and its last stage prints the new model beside the shipped one."""
    import runpy
    import shutil

    parser = runpy.run_path(str(ROOT / "scripts" / "build_default_model.py"))["build_parser"]()
    env = dict(os.environ, WORK=str(tmp_path / "dry"), DRY="1", PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "scripts" / "cpu_retrain_cnn2.sh")], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    builds = [line.split()[3:] for line in run.stdout.splitlines()
              if line.startswith("+ ") and "scripts/build_default_model.py" in line]
    assert len(builds) == 2
    train, evaluate = (parser.parse_args(words) for words in builds)
    assert train.train_only and train.cnn1.endswith("given/cnn1.pt") and not evaluate.train_only
    assert evaluate.evaluate_only and evaluate.calibrate and not evaluate.choose_rim
    assert train.n_train == evaluate.n_train == 120 and train.out == evaluate.out  # the split of the shipped model
    assert not (tmp_path / "dry" / "model").exists()  # a dry run writes nothing but its folder
    assert train.learning_rate is None and train.cnn2_scans == 40 and train.cnn2_full_scans == 4
    # CNN1 fine-tuned first, both at a fine-tuning learning rate, on more of CNN2's scans
    env.update(WORK=str(tmp_path / "dry2"), CNN1_ITERATIONS="3000", LR="1e-4", CNN2_SCANS="64", CNN2_FULL_SCANS="6")
    run = subprocess.run(["bash", str(ROOT / "scripts" / "cpu_retrain_cnn2.sh")], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    train2, evaluate2 = (parser.parse_args(line.split()[3:]) for line in run.stdout.splitlines()
                         if line.startswith("+ ") and "scripts/build_default_model.py" in line)
    assert train2.cnn1 is None and train2.cnn1_init.endswith("given/cnn1.pt") and train2.cnn1_iterations == 3000
    assert train2.learning_rate == 1e-4 and train2.batch_size is None  # CNN1 keeps its own batch size
    assert train2.cnn2_scans == 64 and train2.cnn2_full_scans == evaluate2.cnn2_full_scans == 6
    # the table: the shipped model beside itself, every earlier stage already done
    work = tmp_path / "done"
    (work / "model").mkdir(parents=True)
    shutil.copy(ROOT / "calcscore" / "models" / "default" / "model.json", work / "model" / "model.json")
    shutil.copy(ROOT / "scripts" / "experiments" / "2026-11-28_shipped_on_comparison_scans_after_aorta_spine_fix.json",
                work / "comparison.json")
    (work / "rim.done").touch()
    (work / "evaluate.done").touch()
    env = dict(os.environ, WORK=str(work), PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "scripts" / "cpu_retrain_cnn2.sh")], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    cmp = json.loads((work / "comparison.json").read_text())["heart_region_P0136_P0145"]["sharp"]
    line = next(x for x in run.stdout.splitlines() if x.startswith("heart_region_P0136_P0145") and " sharp " in x)
    assert line.split()[2:] == [f"{cmp['CAC']['f1_pooled']:.3f}", "->", f"{cmp['CAC']['f1_pooled']:.3f}",
                                f"{cmp['TAC']['f1_pooled']:.3f}", "->", f"{cmp['TAC']['f1_pooled']:.3f}"]
    assert "build_default_model" not in run.stdout  # nothing re-run
    assert (work / "retrain.log").read_text().count("pooled F1 (shipped -> new)") == 1


def test_build_script_refuses_cnn1_with_cnn1_init(tmp_path):
    """--cnn1 (use a CNN1 as it is) and --cnn1-init (train it further) exclude each other: a usage
    error naming both, before any data is made."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_default_model.py"), "--out",
                          str(tmp_path / "m"), "--work", str(tmp_path / "w"), "--cnn1", "a.pt", "--cnn1-init", "b.pt"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "--cnn1-init" in run.stderr and "exclude each other" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "w").exists() and not (tmp_path / "m").exists()
