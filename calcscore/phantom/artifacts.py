"""Artefacts of the realistic anatomy's scans: photon-starvation streaks through the shoulders.

Where the X-rays cross both humeral heads, the scapulae and the clavicles, few photons reach
the detector along the lateral direction, and filtered back projection turns the missing
signal into bright and dark streaks running left to right. :func:`add_shoulder_streaks` adds
them to the slices of the shoulder girdle: thin lines near the line joining the humeral heads,
alternately bright and dark, strongest at the heads' level and with the sharp kernel. They are
background: they never change a label (an observer would not label them either).
"""

from __future__ import annotations

import numpy as np

from calcscore.phantom._draw import GridSpec


def add_shoulder_streaks(
    hu: np.ndarray, grid: GridSpec, geo, noise_sd_hu: float, kernel: str, rng
) -> None:
    """Add shoulder streaks to ``hu`` (z, y, x) in place; same ``rng`` seed, same streaks for
    every kernel (one acquisition).

    Args:
        hu: (z, y, x) HU on ``grid``, changed in place.
        grid: the grid of ``hu``.
        geo: the subject's geometry; without a habitus (the first generator's anatomy) nothing
            is added.
        noise_sd_hu: the soft kernel's noise SD (HU): the streaks scale with it.
        kernel: "soft" or "sharp" (the sharp kernel's streaks have 0.55 of the soft amplitude).
        rng: seed or numpy Generator of the streaks.
    """
    hab = getattr(geo, "habitus", None)
    if hab is None or not hab.humeral_heads:
        return
    rng = np.random.default_rng(rng)
    heads = np.array(hab.humeral_heads)
    zc = float(heads[:, 2].mean())
    cy = float(heads[:, 1].mean())
    cx = float(heads[:, 0].mean())
    z = grid.axis_mm(0)
    ks = np.nonzero(np.abs(z - zc) < 45.0)[0]
    if len(ks) == 0:
        return
    # the same lines for every kernel: draw them all first
    n = 9
    lines = {
        int(k): (
            rng.normal(0.0, 0.08, n),  # angle from the left-right axis (rad)
            rng.normal(0.0, 14.0, n),  # offset from the humeral heads' line (mm)
            rng.uniform(0.4, 1.2, n) * rng.choice([-1.0, 1.0], n),
            rng.uniform(0.9, 2.2, n),  # half width (mm)
        )
        for k in ks
    }
    gain = (1.0 if kernel == "soft" else 0.55) * 2.8 * noise_sd_hu
    y = grid.axis_mm(1).astype(np.float32)[:, None] - np.float32(cy)
    x = grid.axis_mm(2).astype(np.float32)[None, :] - np.float32(cx)
    taper = np.exp(-np.sqrt(x * x + y * y) / 260.0).astype(np.float32)
    for k, (ang, off, amp, wid) in lines.items():
        env = float(np.exp(-(((z[k] - zc) / 22.0) ** 2)))
        acc = np.zeros(hu.shape[1:], np.float32)
        for a, o, m, w in zip(ang, off, amp, wid):
            dist = y * np.float32(np.cos(a)) - x * np.float32(np.sin(a)) - np.float32(o)
            acc += np.float32(m) * np.exp(-((dist / np.float32(w)) ** 2))
        hu[k] += np.float32(gain * env) * acc * taper
