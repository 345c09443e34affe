"""Make the real-negative label maps of this folder from the open real chest CTs.

    .venv/bin/python data/real_negatives/make_labels.py [--data ../shared/data/open-chest-ct]

For every ``NAME.nii.gz`` of the data folder it writes ``NAME_labels.nii.gz`` here
(:func:`calcscore.regions.real_negative_labels`: 0 = background far from the heart and the
great vessels, 255 = not annotated) and ``overview_NAME.png`` (every 8th slice, the ignored part
tinted) for a reader to check, and ``manifest.csv`` with the image paths relative to the data
folder's parent (pass it to training after replacing ``DATA`` by that folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from calcscore.io import read_volume, write_labels
from calcscore.labels import IGNORE
from calcscore.regions import real_negative_labels
from calcscore.viz import _pyplot, window
from calcscore.volume import LabelVolume

HERE = Path(__file__).resolve().parent


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
        lab = real_negative_labels(volume)
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
