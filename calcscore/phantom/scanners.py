"""Scanner models as DICOM writes them: manufacturer, model, kernel names, reconstructions."""

from __future__ import annotations

from dataclasses import dataclass

KERNELS = ("soft", "sharp")


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {', '.join(KERNELS)}, got {kernel=}")
    return kernel


def get_scanner(scanner: str | ScannerProfile) -> ScannerProfile:
    if isinstance(scanner, ScannerProfile):
        return scanner
    try:
        return SCANNERS[scanner]
    except KeyError:
        raise ValueError(f"unknown `scanner` {scanner!r}; known: {', '.join(SCANNERS)}") from None


@dataclass(frozen=True)
class ScannerProfile:
    """A scanner model with its kernel names and reconstruction choices, as DICOM writes them."""

    key: str
    manufacturer: str
    model: str
    soft_kernel: str
    sharp_kernel: str
    recons: tuple[tuple[float, float], ...]  # (slice thickness, slice spacing) in mm
    pixel_spacing_mm: tuple[float, float]  # range of in-plane spacing
    outside_fov_hu: float | None = None  # value written outside the reconstruction circle

    def kernel_name(self, kernel: str) -> str:
        return {"soft": self.soft_kernel, "sharp": self.sharp_kernel}[check_kernel(kernel)]


SCANNERS: dict[str, ScannerProfile] = {
    p.key: p
    for p in (
        ScannerProfile(
            "siemens_sensation16",
            "SIEMENS",
            "Sensation 16",
            "B30f",
            "B50f",
            ((2.0, 1.8), (1.0, 1.0), (3.0, 2.5), (2.0, 1.5)),
            (0.55, 0.82),
        ),
        ScannerProfile(
            "siemens_definition",
            "SIEMENS",
            "SOMATOM Definition AS",
            "B30f",
            "B50f",
            ((1.0, 0.8), (2.0, 1.5), (3.0, 3.0)),
            (0.58, 0.85),
        ),
        ScannerProfile(
            "ge_lightspeed16",
            "GE MEDICAL SYSTEMS",
            "LightSpeed16",
            "STANDARD",
            "BONE",
            ((2.5, 2.0), (1.25, 1.25), (2.5, 2.5)),
            (0.62, 0.98),
            -3024.0,
        ),
        ScannerProfile(
            "ge_lightspeed_vct",
            "GE MEDICAL SYSTEMS",
            "LightSpeed VCT",
            "STANDARD",
            "LUNG",
            ((2.5, 1.25), (1.25, 1.0), (2.5, 2.5)),
            (0.6, 0.98),
            -3024.0,
        ),
        ScannerProfile(
            "philips_brilliance16",
            "Philips",
            "Brilliance 16",
            "B",
            "D",
            ((2.0, 1.0), (3.0, 1.5), (2.0, 2.0)),
            (0.55, 0.9),
        ),
        ScannerProfile(
            "toshiba_aquilion",
            "TOSHIBA",
            "Aquilion",
            "FC12",
            "FC51",
            ((2.0, 1.6), (3.0, 2.0), (1.0, 1.0)),
            (0.49, 0.8),
            -2048.0,
        ),
        ScannerProfile(
            "canon_aquilion_one",
            "TOSHIBA",
            "Aquilion ONE",
            "FC12",
            "FC51",
            ((3.0, 3.0), (2.0, 1.5), (1.0, 0.8)),
            (0.49, 0.78),
            -2048.0,
        ),
    )
}
