"""Make the real-negative label maps of this folder from the open real chest CTs.

    .venv/bin/python data/real_negatives/make_labels.py [--data ../shared/data/open-chest-ct]

For every ``NAME.nii.gz`` of the data folder it writes ``NAME_labels.nii.gz`` here
(:func:`calcscore.negatives.real_negative_labels`: 0 = background far from the heart and the
great vessels, 255 = not annotated; then :func:`bone_in_the_margin`: the chest wall's bone,
cartilage and metal near the heart background too) and ``overview_NAME.png`` (every 8th slice, the ignored part
tinted) for a reader to check, and ``manifest.csv`` with the image paths relative to the data
folder's parent (pass it to training after replacing ``DATA`` by that folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from calcscore.bone import bone_mask
from calcscore.checks import check_scan
from calcscore.io import read_volume, write_labels
from calcscore.labels import IGNORE
from calcscore.negatives import real_negative_labels
from calcscore.viz import _pyplot, window
from calcscore.volume import LabelVolume

HERE = Path(__file__).resolve().parent
#: voxels >= 130 HU less deep than this under the skin (in-plane) are chest wall: the sternum,
#: costal cartilage, ribs, sternotomy wires, the internal thoracic arteries of a contrast scan
CHEST_WALL_MM = 25.0


def bone_in_the_margin(volume, labels: np.ndarray, *, contrast: bool) -> np.ndarray:
    """Make background what the 15 mm margin of :func:`real_negative_labels` ignored but is surely
    not calcium: voxels >= 130 HU within ``CHEST_WALL_MM`` of the skin and, without contrast,
    the thick bone of :func:`calcscore.bone.bone_mask` (vertebrae, rib heads; with contrast
    the enhanced blood would count as bone). The heart and the great vessels stay ignored."""
    hot = volume.hu >= 130
    body = np.stack(
        [
            ndimage.binary_opening(ndimage.binary_fill_holes(s), iterations=2)
            for s in volume.hu > -400
        ]
    )
    depth = np.stack(
        [ndimage.distance_transform_edt(s, sampling=volume.spacing_mm[1:]) for s in body]
    )
    sure = depth < CHEST_WALL_MM
    if not contrast:
        sure |= bone_mask(volume, max_lesion_mm3=3000.0)
    return np.where((labels == IGNORE) & hot & sure, 0, labels).astype(np.uint8)


def overview(volume, labels: np.ndarray, path: Path, title: str) -> None:
    plt = _pyplot()
    zs = list(range(2, volume.shape[0] - 1, max(1, volume.shape[0] // 8)))[:8]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.5))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, z in zip(axes.ravel(), zs):
        rgb = np.repeat(window(volume.hu[z])[..., None], 3, axis=2)
        ign = labels[z] == IGNORE
        rgb[ign] = 0.6 * rgb[ign] + 0.4 * np.array([0.2, 0.5, 1.0])
        hot = (volume.hu[z] >= 130) & ~ign
        rgb[hot] = [1.0, 0.2, 0.2]
        ax.imshow(rgb, aspect=volume.spacing_mm[1] / volume.spacing_mm[2])
        ax.set_title(f"slice {z}")
    fig.suptitle(f"{title}: blue = not annotated (ignored), red = >= 130 HU background")
    fig.tight_layout()
    fig.savefig(path, dpi=50)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data" / "open-chest-ct"))
    args = ap.parse_args(argv)
    data = Path(args.data)
    rows = ["image,labels,scan_id,participant_id"]
    for p in sorted(data.glob("*.nii.gz")):
        name = p.name[: -len(".nii.gz")]
        volume = read_volume(p)
        contrast = any(f.code == "contrast" for f in check_scan(volume).findings)
        lab = bone_in_the_margin(volume, real_negative_labels(volume), contrast=contrast)
        write_labels(LabelVolume.like(volume, lab), HERE / f"{name}_labels.nii.gz")
        overview(volume, lab, HERE / f"overview_{name}.png", name)
        hot = volume.hu >= 130
        print(
            f"{name}: {int((hot & (lab == 0)).sum())} voxels >= 130 HU background, "
            f"{int((hot & (lab == IGNORE)).sum())} ignored",
            flush=True,
        )
        rows.append(
            f"DATA/{p.name},{name}_labels.nii.gz,{name},{name[:-2] if name.startswith('lungdx') else name}"
        )
    (HERE / "manifest.csv").write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
