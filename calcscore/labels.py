"""The label schema of calcscore (Lessmann et al. 2018, Fig. 6).

Voxel-level labels: every calcified voxel carries the label of the structure it lies in.
"""

from __future__ import annotations

from enum import IntEnum


class Label(IntEnum):
    """Voxel labels. LAD includes the left main coronary artery."""

    BACKGROUND = 0
    LAD = 1
    LCX = 2
    RCA = 3
    TAC = 4
    AV = 5
    MV = 6

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES[self]

    @property
    def colour(self) -> tuple[float, float, float]:
        """RGB in [0, 1], the colours of the paper's Fig. 6."""
        return COLOURS[self]

    @classmethod
    def from_name(cls, name: str) -> Label:
        """Convert a short name ("LAD", "tac", "AV") to a label, with a clear error."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            valid = ", ".join(m.name for m in cls)
            raise ValueError(f"unknown label name {name!r}; valid names: {valid}") from None


DISPLAY_NAMES: dict[Label, str] = {
    Label.BACKGROUND: "background",
    Label.LAD: "left anterior descending artery (incl. left main)",
    Label.LCX: "left circumflex artery",
    Label.RCA: "right coronary artery",
    Label.TAC: "thoracic aorta",
    Label.AV: "aortic valve",
    Label.MV: "mitral valve",
}

# Fig. 6: red, green, blue, yellow, purple, orange.
COLOURS: dict[Label, tuple[float, float, float]] = {
    Label.BACKGROUND: (0.0, 0.0, 0.0),
    Label.LAD: (1.0, 0.0, 0.0),
    Label.LCX: (0.0, 0.8, 0.0),
    Label.RCA: (0.0, 0.3, 1.0),
    Label.TAC: (1.0, 0.9, 0.0),
    Label.AV: (0.6, 0.2, 0.8),
    Label.MV: (1.0, 0.55, 0.0),
}

#: All calcium labels, in order.
CALCIUM_LABELS: tuple[Label, ...] = (
    Label.LAD,
    Label.LCX,
    Label.RCA,
    Label.TAC,
    Label.AV,
    Label.MV,
)
#: Coronary artery calcium: CAC = LAD + LCX + RCA.
CAC_LABELS: tuple[Label, ...] = (Label.LAD, Label.LCX, Label.RCA)
#: Named groups of labels used in reports (the paper's table columns).
GROUPS: dict[str, tuple[Label, ...]] = {
    "CAC": CAC_LABELS,
    "TAC": (Label.TAC,),
    "AV": (Label.AV,),
    "MV": (Label.MV,),
}
N_CLASSES = len(Label)
#: The label of a voxel whose class is unknown: a real scan used as a negative (its voxels
#: outside the heart and the great vessels are background, those inside are not annotated) marks
#: its candidates inside with it; training leaves them out of every pool and loss
#: (:func:`calcscore.sampling.cache_scan`, :func:`calcscore.negatives.real_negative_labels`).
IGNORE = 255
#: A training target only, never a network output: coronary calcium whose artery is not given
#: (lesions inserted into a real scan, whose artery a groove rule could only guess). The loss
#: asks for LAD + LCX + RCA together (:func:`calcscore.training.steps.label_loss`).
CORONARY = 7
