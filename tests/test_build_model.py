"""scripts/build_default_model.py and write_model_card.py end to end at a tiny size (the GPU run
uses the same script with --preset paper --device cuda)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from calcscore.inference import Model

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["background", "LAD", "LCX", "RCA", "TAC", "AV", "MV"]


def test_build_script_trains_evaluates_and_writes_a_model_card(tmp_path):
    out = tmp_path / "model"
    cmd = [sys.executable, str(ROOT / "scripts" / "build_default_model.py"), "--out", str(out), "--work",
           str(tmp_path / "work"), "--n-train", "3", "--train-size", "small", "--n-full", "0", "--n-test", "1",
           "--test-size", "small", "--cnn1-iterations", "4", "--cnn2-iterations", "4", "--cnn2-scans", "2",
           "--max-dilation", "4", "--threads", "1", "--workers", "2"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
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
        if np.isfinite(a["sensitivity_pooled"]):
            assert b["sensitivity_pooled"] <= a["sensitivity_pooled"] + 1e-9
    subprocess.run([sys.executable, str(ROOT / "scripts" / "write_model_card.py"), str(out)], check=True,
                   capture_output=True, cwd=ROOT)
    card = (out / "MODEL_CARD.md").read_text()
    assert "learned from synthetic phantoms only" in card
    assert "receptive field 19 px" in card and "Label confusion, soft" in card and "CNN1 alone" in card
    assert "--max-dilation 4" in card
