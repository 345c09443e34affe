"""Cut the heart region out of open real chest CTs, as real negatives the repository keeps.

    .venv/bin/python data/real_negatives/make_heart_crops.py NAME [NAME ...] \
        [--data ../shared/data/open-chest-ct]

For every NAME whose heart ``hearts.json`` outlines, it writes into this folder:

- ``NAME-heart.nii.gz``: the scan's heart slices and ``MARGIN_Z`` slices above and below, its
  heart box and ``MARGIN_YX`` voxels around (int16 HU, the scan's geometry);
- ``NAME-heart_labels.nii.gz``: the same crop of ``NAME_labels.nii.gz``;
- the crop's heart (``NAME-heart``) in ``hearts.json``.

A recipe's ``[real_negatives]`` finds such an image beside its label map, so the hybrid positives
of more patients than the one scan calcscore ships (lungdx-a0001-b) can be built from a clean
checkout without ``../shared``. The crop holds what lies next to the heart: the sternum, costal
cartilage, ribs and spine, which the label map calls background.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calcscore.io import read_labels, read_volume, write_labels, write_text_atomic, write_volume
from calcscore.viz import crop as crop_to

HERE = Path(__file__).resolve().parent
MARGIN_Z = 8
MARGIN_YX = 48


def crop(name: str, data: Path, hearts: dict) -> dict:
    """Write the crop of ``name`` and return its heart in the crop's voxels."""
    volume = read_volume(data / f"{name}.nii.gz")
    labels = read_labels(HERE / f"{name}_labels.nii.gz")
    heart = hearts[name]
    lo = [max(0, heart[a][0] - m) for a, m in zip("zyx", (MARGIN_Z, MARGIN_YX, MARGIN_YX))]
    hi = [
        min(n, heart[a][1] + m + 1)
        for a, m, n in zip("zyx", (MARGIN_Z, MARGIN_YX, MARGIN_YX), volume.shape)
    ]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    write_volume(crop_to(volume, box), HERE / f"{name}-heart.nii.gz")
    write_labels(crop_to(labels, box), HERE / f"{name}-heart_labels.nii.gz")
    return {a: [heart[a][0] - o, heart[a][1] - o] for a, o in zip("zyx", lo)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data" / "open-chest-ct"))
    args = ap.parse_args(argv)
    hearts_path = HERE / "hearts.json"
    hearts = json.loads(hearts_path.read_text())
    for name in args.names:
        if name not in hearts:
            print(f"{hearts_path}: no heart for {name}; outline it first", file=sys.stderr)
            return 2
        hearts[f"{name}-heart"] = crop(name, Path(args.data), hearts)
        print(f"{name}-heart: {hearts[f'{name}-heart']}")
    lines = [f' "{k}": {json.dumps(v)}' for k, v in hearts.items()]
    write_text_atomic(hearts_path, "{\n" + ",\n".join(lines) + "\n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
