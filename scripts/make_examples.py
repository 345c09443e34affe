"""Build the small real scans that ship in ``calcscore/datasets/data`` from the shared data.

Run once, from the repository root, with the shared data beside the repository:

    python scripts/make_examples.py --shared ../shared/data

- ``qrm-canon-large-rep1.nii.gz``: the 47 DICOM slices of the real QRM phantom scan as one
  compressed int16 NIfTI (the HU are whole numbers, -2048..1275: lossless), and
  ``qrm-canon-large-rep1.json``: the DICOM header fields calcscore uses (manufacturer, model,
  kernel, kVp, slice thickness, UIDs) and the geometry at full precision (NIfTI stores spacing
  and origin as float32; :func:`calcscore.datasets.examples.qrm_phantom` takes them from here);
- ``lungdx-a0001-b.nii.gz`` and ``.json``: copied byte for byte.

It then reads both back and checks that the QRM scan equals the DICOM series voxel for voxel.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from calcscore.io import read_volume, write_volume

OUT = Path(__file__).resolve().parents[1] / "calcscore" / "datasets" / "data"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, required=True, help="the shared data folder")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    qrm_dir = args.shared / "qrm-canon-large-rep1"
    dicom = read_volume(qrm_dir / "dicom")
    nii = write_volume(dicom, OUT / "qrm-canon-large-rep1.nii.gz")
    header = {k: v for k, v in vars(dicom.meta).items() if k != "extra" and v is not None} | {
        "extra": dict(dicom.meta.extra),  # series description, study date, ...
        "name": "qrm-canon-large-rep1",
        "shape_zyx": list(dicom.shape),
        "spacing_zyx_mm": list(dicom.spacing_mm),
        "origin_zyx_mm": list(dicom.origin_mm),
        "direction_zyx": dicom.direction.tolist(),
        "source": "MolloiLab/CAC-stanford-data, 47 DICOM slices (MIT licence)",
    }
    (OUT / "qrm-canon-large-rep1.json").write_text(json.dumps(header, indent=1) + "\n")
    shutil.copyfile(qrm_dir / "LICENSE", OUT / "qrm-canon-large-rep1.LICENSE")
    shutil.copyfile(
        qrm_dir / "reference_agatston_mass.csv",
        OUT / "qrm-canon-large-rep1_reference_agatston_mass.csv",
    )
    back = read_volume(nii)
    assert np.array_equal(back.hu, dicom.hu), "the NIfTI does not hold the DICOM's HU"

    for suffix in (".nii.gz", ".json"):
        src = args.shared / "open-chest-ct" / f"lungdx-a0001-b{suffix}"
        shutil.copyfile(src, OUT / src.name)
        assert sha256(src) == sha256(OUT / src.name)
    for f in sorted(OUT.iterdir()):
        print(f"{f.stat().st_size:>10}  {sha256(f)[:16]}  {f.name}")


if __name__ == "__main__":
    main()
