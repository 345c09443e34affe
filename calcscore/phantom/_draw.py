"""Drawing primitives for the phantom: regular grids, antialiased ellipsoids, tubes and curves.

Physical points are patient LPS millimetres ordered (x, y, z); grids and arrays are (z, y, x)
with an identity direction, so array axis z runs to the head (superior), y to the back
(posterior) and x to the patient's left. Every primitive works inside a bounding box, never on
the whole grid, so drawing cost follows the size of the structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class GridSpec:
    """A regular (z, y, x) grid: ``origin_mm`` is the centre of voxel (0, 0, 0), (z, y, x)."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    def axis_mm(self, axis: int) -> np.ndarray:
        """Physical coordinates (mm) of the voxel centres along array axis 0 (z), 1 (y) or 2 (x)."""
        return self.origin_mm[axis] + np.arange(self.shape[axis]) * self.spacing_mm[axis]

    def box(self, lo_xyz, hi_xyz) -> Box | None:
        """Index slices of the voxels whose centres lie in [lo, hi] (x, y, z mm); None if empty."""
        out = []
        for axis, (lo, hi) in zip((2, 1, 0), zip(lo_xyz, hi_xyz)):
            o, s, n = self.origin_mm[axis], self.spacing_mm[axis], self.shape[axis]
            i0 = max(int(np.ceil((lo - o) / s)), 0)
            i1 = min(int(np.floor((hi - o) / s)) + 1, n)
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return (out[2], out[1], out[0])

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable physical coordinates (z[:, None, None], y[None, :, None], x[None, None, :])."""
        z = self.axis_mm(0)[box[0]].astype(np.float32)
        y = self.axis_mm(1)[box[1]].astype(np.float32)
        x = self.axis_mm(2)[box[2]].astype(np.float32)
        return z[:, None, None], y[None, :, None], x[None, None, :]

    @property
    def aa_width_mm(self) -> float:
        """Width of the antialiasing ramp: one in-plane voxel."""
        return float(max(self.spacing_mm[1], self.spacing_mm[2]))


def coverage(sd_mm: np.ndarray, width_mm: float) -> np.ndarray:
    """Partial-volume fraction from a signed distance (negative inside), linear over one voxel."""
    return np.clip(0.5 - sd_mm / width_mm, 0.0, 1.0, dtype=np.float32)


def paint(
    arr: np.ndarray, box: Box, cov: np.ndarray, value, where: np.ndarray | None = None
) -> None:
    """Blend ``value`` into ``arr[box]`` with partial-volume weights ``cov`` (in place).

    Args:
        arr: the (z, y, x) volume to paint, HU, changed in place.
        box: the index slices of ``arr`` that ``cov`` covers.
        cov: partial-volume fractions (0 to 1) of the shape of ``arr[box]``.
        value: the HU painted: a scalar or an array broadcastable to ``arr[box]``.
        where: a mask (or weights) broadcastable to ``arr[box]`` that limits the paint; None:
            everywhere in the box.
    """
    sub = arr[box]
    if where is not None:
        cov = cov * where
    sub += cov * (np.float32(value) - sub) if np.ndim(value) == 0 else cov * (value - sub)


def ellipsoid_sd(
    grid: GridSpec, box: Box, center_xyz, axes_mm, rot: np.ndarray | None = None
) -> np.ndarray:
    """Approximate signed distance (mm, radial from the centre) to an ellipsoid in a box.

    Args:
        grid: the grid of the box.
        box: the index slices of ``grid`` to evaluate.
        center_xyz: the ellipsoid's centre (x, y, z) mm.
        axes_mm: its three semi-axes (mm), along the columns of ``rot``.
        rot: 3 x 3, columns the ellipsoid's local axes as (x, y, z) unit vectors; identity if None.

    Returns:
        float32 (z, y, x) of the box's shape: the signed distance (mm), negative inside.
    """
    z, y, x = grid.coords(box)
    dx = x - np.float32(center_xyz[0])
    dy = y - np.float32(center_xyz[1])
    dz = z - np.float32(center_xyz[2])
    a = np.asarray(axes_mm, dtype=np.float32)
    if rot is None:
        q2 = (dx / a[0]) ** 2 + (dy / a[1]) ** 2 + (dz / a[2]) ** 2
    else:
        r = np.asarray(rot, dtype=np.float32)
        q2 = np.zeros(np.broadcast_shapes(dx.shape, dy.shape, dz.shape), np.float32)
        for k in range(3):
            u = r[0, k] * dx + r[1, k] * dy + r[2, k] * dz
            q2 += (u / a[k]) ** 2
    rho = np.sqrt(dx * dx + dy * dy + dz * dz)
    q = np.sqrt(q2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.where(q > 1e-6, rho * (1.0 - 1.0 / np.maximum(q, 1e-6)), -float(a.min()))
    return sd.astype(np.float32, copy=False)


def resample_curve(points_xyz: np.ndarray, step_mm: float = 1.0) -> np.ndarray:
    """A smooth curve through control points, resampled at about ``step_mm`` (cubic spline)."""
    from scipy.interpolate import CubicSpline

    p = np.asarray(points_xyz, dtype=float)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-6])
    p = p[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    if len(p) < 3:
        n = max(int(np.ceil(s[-1] / step_mm)) + 1, 2)
        t = np.linspace(0.0, 1.0, n)[:, None]
        return p[0] * (1 - t) + p[-1] * t
    spline = CubicSpline(s, p, bc_type="natural")
    dense = spline(np.linspace(0.0, s[-1], max(int(s[-1] / (step_mm / 4)), 8)))
    ds = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    n = max(int(np.ceil(ds[-1] / step_mm)) + 1, 2)
    u = np.linspace(0.0, ds[-1], n)
    return np.stack([np.interp(u, ds, dense[:, k]) for k in range(3)], axis=1)


def curve_frames(points_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit tangents and two unit normals (rotation-minimising) along a sampled curve."""
    p = np.asarray(points_xyz, dtype=float)
    t = np.gradient(p, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-12
    ref = np.array([0.0, 0.0, 1.0]) if abs(t[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    n = np.empty_like(p)
    n0 = ref - t[0] * (ref @ t[0])
    n[0] = n0 / np.linalg.norm(n0)
    for i in range(1, len(p)):
        v = n[i - 1] - t[i] * (n[i - 1] @ t[i])
        norm = np.linalg.norm(v)
        n[i] = v / norm if norm > 1e-9 else n[i - 1]
    b = np.cross(t, n)
    return t, n, b


def arc_length(points_xyz: np.ndarray) -> np.ndarray:
    p = np.asarray(points_xyz, dtype=float)
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])


def tube(
    grid: GridSpec, points_xyz: np.ndarray, radius_mm, *, margin_mm: float = 2.0, chunk: int = 12
) -> tuple[Box, np.ndarray] | None:
    """Signed distance (mm) to a tube of varying radius around a polyline, in its bounding box.

    Returns ``(box, sd)``; voxels farther than ``margin_mm`` outside the tube hold ``margin_mm``.
    The polyline is processed in chunks of ``chunk`` segments with their own small boxes, so a
    long oblique curve costs little more than its own volume.

    Args:
        grid: the grid to draw on.
        points_xyz: (N, 3) points of the polyline, (x, y, z) mm.
        radius_mm: the tube's radius (mm), a scalar or one per point (N,).
        margin_mm: how far outside the tube the box reaches (and the cap of ``sd``).
        chunk: segments per sub-box.

    Returns:
        ``(box, sd)``: the index slices of the bounding box and the float32 (z, y, x) signed
        distance (mm, negative inside) in it; None when the box misses the grid.
    """
    p = np.asarray(points_xyz, dtype=np.float32)
    r = np.broadcast_to(np.asarray(radius_mm, dtype=np.float32), (len(p),))
    if len(p) < 2:
        p = np.concatenate([p, p + np.float32(1e-3)])
        r = np.concatenate([r, r])
    reach = float(r.max()) + margin_mm
    box = grid.box(p.min(0) - reach, p.max(0) + reach)
    if box is None:
        return None
    bshape = tuple(s.stop - s.start for s in box)
    sd = np.full(bshape, np.float32(margin_mm), np.float32)
    for c0 in range(0, len(p) - 1, chunk):
        c1 = min(c0 + chunk, len(p) - 1)
        a, b = p[c0:c1], p[c0 + 1 : c1 + 1]
        ra, rb = r[c0:c1], r[c0 + 1 : c1 + 1]
        lo = np.minimum(a.min(0), b.min(0)) - (max(ra.max(), rb.max()) + margin_mm)
        hi = np.maximum(a.max(0), b.max(0)) + (max(ra.max(), rb.max()) + margin_mm)
        sub = grid.box(lo, hi)
        if sub is None:
            continue
        z, y, x = grid.coords(sub)
        shape = tuple(s.stop - s.start for s in sub)
        best = np.full(shape, np.float32(margin_mm), np.float32)
        for k in range(len(a)):
            d = b[k] - a[k]
            dd = float(d @ d) or 1e-9
            wx, wy, wz = x - a[k, 0], y - a[k, 1], z - a[k, 2]
            t = np.clip((wx * d[0] + wy * d[1] + wz * d[2]) / dd, 0.0, 1.0)
            ex, ey, ez = wx - t * d[0], wy - t * d[1], wz - t * d[2]
            dist = np.sqrt(ex * ex + ey * ey + ez * ez) - (ra[k] + t * (rb[k] - ra[k]))
            np.minimum(best, dist, out=best)
        rel = tuple(slice(s.start - bb.start, s.stop - bb.start) for s, bb in zip(sub, box))
        np.minimum(sd[rel], best, out=sd[rel])
    return box, sd


def capsule(
    grid: GridSpec, a_xyz, b_xyz, radius_mm: float, *, margin_mm: float = 2.0
) -> tuple[Box, np.ndarray] | None:
    """Signed distance to a straight capsule (segment a-b with radius), in its bounding box.

    Args:
        grid: the grid to draw on.
        a_xyz, b_xyz: the segment's ends, (x, y, z) mm.
        radius_mm: the capsule's radius (mm).
        margin_mm: how far outside the capsule the box reaches (and the cap of the distance).

    Returns:
        ``(box, sd)`` as :func:`tube`; None when the box misses the grid.
    """
    return tube(
        grid, np.stack([np.asarray(a_xyz), np.asarray(b_xyz)]), radius_mm, margin_mm=margin_mm
    )


def flat_tube(
    grid: GridSpec,
    points_xyz: np.ndarray,
    normals_xyz: np.ndarray,
    r_normal_mm,
    r_binormal_mm,
    *,
    margin_mm: float = 2.0,
    chunk: int = 8,
) -> tuple[Box, np.ndarray, float] | None:
    """A tube of elliptical cross-section (a rib, a cartilage, a clavicle) around a polyline.

    The cross-section at point k has semi-axis ``r_normal_mm`` along ``normals_xyz[k]`` and
    ``r_binormal_mm`` across it (both scalars or (N,) arrays). Returns ``(box, q, r_mean)``: q is
    the normalised radius (1 on the surface, 0 on the curve; capped outside), so
    ``(q - f) * r_mean`` is an approximate signed distance (mm) to the surface shrunk by ``f`` (a
    cortex and its marrow from one pass).

    Args:
        grid: the grid to draw on.
        points_xyz: (N, 3) points of the polyline, (x, y, z) mm.
        normals_xyz: (N, 3) the direction of ``r_normal_mm`` at each point, (x, y, z).
        r_normal_mm: the semi-axis (mm) along the normal.
        r_binormal_mm: the semi-axis (mm) across it.
        margin_mm: how far outside the surface the box reaches; q is capped there.
        chunk: segments per sub-box.

    Returns:
        ``(box, q, r_mean)``: the index slices of the bounding box, the float32 (z, y, x)
        normalised radius in it and the mean semi-axis (mm); None when the box misses the grid
        or there are fewer than two points.
    """
    p = np.asarray(points_xyz, dtype=np.float32)
    nrm = np.asarray(normals_xyz, dtype=np.float32)
    rn = np.broadcast_to(np.asarray(r_normal_mm, dtype=np.float32), (len(p),))
    rb = np.broadcast_to(np.asarray(r_binormal_mm, dtype=np.float32), (len(p),))
    r_mean = float(np.sqrt(rn.mean() * rb.mean()))
    q_cap = np.float32(1.0 + margin_mm / max(r_mean, 1e-3))
    reach = float(max(rn.max(), rb.max())) + margin_mm
    box = grid.box(p.min(0) - reach, p.max(0) + reach)
    if box is None or len(p) < 2:
        return None
    q_all = np.full(tuple(s.stop - s.start for s in box), q_cap, np.float32)
    for c0 in range(0, len(p) - 1, chunk):
        c1 = min(c0 + chunk, len(p) - 1)
        seg = p[c0 : c1 + 1]
        sub = grid.box(seg.min(0) - reach, seg.max(0) + reach)
        if sub is None:
            continue
        z, y, x = grid.coords(sub)
        best = np.full(tuple(s.stop - s.start for s in sub), q_cap, np.float32)
        for k in range(c0, c1):
            a, d = p[k], p[k + 1] - p[k]
            dd = float(d @ d) or 1e-9
            wx, wy, wz = x - a[0], y - a[1], z - a[2]
            t = np.clip((wx * d[0] + wy * d[1] + wz * d[2]) / dd, 0.0, 1.0)
            ex, ey, ez = wx - t * d[0], wy - t * d[1], wz - t * d[2]
            n = nrm[k] - d * (nrm[k] @ d) / dd
            n = n / (np.linalg.norm(n) + 1e-9)
            b = np.cross(d, n)
            b = b / (np.linalg.norm(b) + 1e-9)
            en = ex * n[0] + ey * n[1] + ez * n[2]
            eb = ex * b[0] + ey * b[1] + ez * b[2]
            e2 = ex * ex + ey * ey + ez * ez
            et2 = np.maximum(e2 - en * en - eb * eb, 0.0)
            r_n = rn[k] + t * (rn[k + 1] - rn[k])
            r_b = rb[k] + t * (rb[k + 1] - rb[k])
            q = np.sqrt((en / r_n) ** 2 + (eb / r_b) ** 2 + et2 / (r_n * r_b))
            np.minimum(best, q, out=best)
        rel = tuple(slice(s.start - bb.start, s.stop - bb.start) for s, bb in zip(sub, box))
        np.minimum(q_all[rel], best, out=q_all[rel])
    return box, q_all, r_mean


def segments_at(curve: np.ndarray, marks: list[np.ndarray]) -> tuple[list[int], np.ndarray]:
    """Split a curve's points into segments at the points nearest ``marks`` (in order).

    Args:
        curve: (N, 3) points.
        marks: the points where segments 1, 2, ... begin.

    Returns:
        (the index of the point nearest each mark, an (N,) int8 segment number per point).
    """
    idx = [int(np.argmin(np.linalg.norm(curve - m, axis=1))) for m in marks]
    seg = np.full(len(curve), len(marks), np.int8)
    for k in range(len(marks) - 1, -1, -1):
        seg[: idx[k]] = k
    return idx, seg
