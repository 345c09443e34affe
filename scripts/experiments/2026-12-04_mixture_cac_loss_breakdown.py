"""Where a model's reference calcium goes on the heart-region cohort P0136..P0145: a 4 x 4 voxel
confusion (rows: reference background / CAC / TAC / valves; columns: prediction) of CNN1 alone and
of the whole pipeline, per model and kernel, on the scans' own grid.

Used on 2026-12-04 to see why the fine-tuned CNN1 of that day, paired with the shipped CNN2, lost
heart-region CAC (figures in 2026-12-04_cpu_cnn1_cnn2_finetune_fixed_phantoms.json):

    python scripts/experiments/2026-12-04_mixture_cac_loss_breakdown.py \
        shipped=calcscore/models/default mixture=/tmp/mix

About 8 minutes for two models on a 2-core CPU.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from build_default_model import cohort_scans  # noqa: E402

from calcscore.inference import InferenceOptions, Model, segment  # noqa: E402


def group(a: np.ndarray) -> np.ndarray:
    g = np.zeros_like(a)
    g[(a >= 1) & (a <= 3)] = 1
    g[a == 4] = 2
    g[a >= 5] = 3
    return g


def main() -> None:
    torch.set_num_threads(2)
    models = {k: Model.load(p) for k, p in (arg.split("=", 1) for arg in sys.argv[1:])}
    res: dict = {}
    for cs in cohort_scans(range(136, 146), seed=2018, size="medium", workers=1):
        ref = group(cs.labels.labels).ravel()
        for name, m in models.items():
            seg = segment(cs.volume, m, InferenceOptions(device="cpu", channels_last=True))
            r = res.setdefault((name, cs.kernel), {"cnn1": np.zeros((4, 4), int), "final": np.zeros((4, 4), int)})
            np.add.at(r["cnn1"], (ref, group(seg.cnn1_labels(cs.volume).labels).ravel()), 1)
            np.add.at(r["final"], (ref, group(seg.labels.labels).ravel()), 1)
        print(cs.scan_id, flush=True)
    for (name, kernel), r in res.items():
        for stage, m in r.items():
            m[0, 0] = 0
            print(f"{name} {kernel} {stage} (rows reference bg/CAC/TAC/valves, columns prediction)\n{m}")


if __name__ == "__main__":
    main()
