"""Where a model's reference calcium goes on the heart-region cohort P0136..P0145: a voxel
confusion of label groups (rows: reference background and calcscore.labels.GROUPS, CAC / TAC / AV /
MV; columns: prediction) of CNN1 alone and of the whole pipeline, per model and kernel, on the
scans' own grid.

Used on 2026-12-04 to see why the fine-tuned CNN1 of that day, paired with the shipped CNN2, lost
heart-region CAC (figures in 2026-12-04_cpu_cnn1_cnn2_finetune_fixed_phantoms.json):

    python scripts/experiments/2026-12-04_mixture_cac_loss_breakdown.py \
        shipped=calcscore/models/default mixture=/tmp/mix

About 8 minutes for two models on a 2-core CPU.
"""

import sys

import numpy as np
import torch

from calcscore.inference import InferenceOptions, Model, segment
from calcscore.labels import GROUPS, N_CLASSES
from calcscore.metrics import label_confusion
from calcscore.pipeline.cohort import cohort_scans

#: (label, row) one-hot: row 0 background, then GROUPS in order
TO_GROUP = np.zeros((N_CLASSES, len(GROUPS) + 1))
TO_GROUP[0, 0] = 1
for row, labels in enumerate(GROUPS.values(), start=1):
    TO_GROUP[[int(lab) for lab in labels], row] = 1


def grouped_voxels(reference, prediction) -> np.ndarray:
    """calcscore.metrics.label_confusion in voxels, rows and columns summed into label groups."""
    per_label = label_confusion(reference, prediction).to_numpy() / reference.voxel_volume_mm3
    return TO_GROUP.T @ per_label @ TO_GROUP


def main() -> None:
    torch.set_num_threads(2)
    models = {k: Model.load(p) for k, p in (arg.split("=", 1) for arg in sys.argv[1:])}
    res: dict = {}
    for cs in cohort_scans(range(136, 146), seed=2018, size="medium", workers=1):
        for name, m in models.items():
            seg = segment(cs.volume, m, InferenceOptions(device="cpu", channels_last=True))
            r = res.setdefault((name, cs.kernel), {"cnn1": 0.0, "final": 0.0})
            r["cnn1"] = r["cnn1"] + grouped_voxels(cs.labels, seg.cnn1_labels(cs.volume))
            r["final"] = r["final"] + grouped_voxels(cs.labels, seg.labels)
        print(cs.scan_id, flush=True)
    rows = "/".join(["background", *GROUPS])
    for (name, kernel), r in res.items():
        for stage, m in r.items():
            print(
                f"{name} {kernel} {stage} (voxels; rows: reference {rows}; columns: prediction)\n"
                f"{np.rint(m).astype(int)}"
            )


if __name__ == "__main__":
    main()
