"""Where and how the networks run: the device, the precision and the processes of a
distributed run.

Training, inference, calibration and the scoring pipeline all choose a device ("auto", "cpu",
"cuda", "cuda:N"), a precision (bf16 autocast or fp32) and, under ``torchrun``, their process's
rank. This module does it once for all of them; it imports nothing above
:mod:`calcscore.errors`. The old names stay importable where they were
(``calcscore.inference.autocast``, ``calcscore.training.resolve_device``, ...).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from calcscore.errors import CalcscoreError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ device
def resolve_device(device: str | torch.device, *, local_rank: int | None = None) -> torch.device:
    """``"auto"`` (a GPU when CUDA is available, else the CPU), ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"`` -> a :class:`torch.device`; asking for CUDA where it is not available is an
    error. With ``local_rank`` (one process per GPU under ``torchrun``) a bare ``"cuda"`` (or
    ``"auto"`` on a GPU machine) becomes that process's GPU, ``cuda:{local_rank % GPUs}``."""
    if str(device) == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise CalcscoreError(
                f"device {str(device)!r} was asked for but CUDA is not available (use --device cpu)"
            )
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return dev


# --------------------------------------------------------------------------------- precision
def bf16_supported(device: str | torch.device) -> bool:
    """Whether bfloat16 autocast is native on ``device``: a CUDA GPU with bf16 (Ampere and
    later), or a CPU whose oneDNN has bf16 kernels (AVX-512 BF16 / AMX). On this project's CPU
    (AVX-512 BF16) bf16 + channels-last scores a scan faster than fp32 + channels-last
    (benchmarks/README.md) and gave the same labels on held-out phantoms (README); elsewhere
    fp32 is the safe choice."""
    device = torch.device(device)
    try:
        if device.type == "cuda":
            return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        if device.type == "cpu":
            return bool(
                torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported()
            )
    except (AttributeError, RuntimeError):  # private oneDNN query missing in some torch builds
        return False
    return False


def resolve_precision(precision: str, device: str | torch.device) -> bool:
    """``"auto"`` / ``"bf16"`` / ``"fp32"`` -> whether to run in bf16 on ``device``."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"`precision` must be 'auto', 'bf16' or 'fp32', got {precision=}")
    return bf16_supported(device) if precision == "auto" else precision == "bf16"


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------- distributed
@dataclass
class DistInfo:
    """This process's place in a distributed run (one process, rank 0, when not distributed);
    ``initialised_here``: :func:`init_distributed` started the process group (and
    :func:`shutdown_distributed` ends it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str) -> DistInfo:
    """Join the process group that ``torchrun`` set up (NCCL on CUDA, gloo on the CPU), or report
    a single process when ``WORLD_SIZE`` is unset or 1. Reuses a group that is already running."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, initialised_here=True)


def shutdown_distributed(info: DistInfo) -> None:
    """End the process group if :func:`init_distributed` started it."""
    if info.initialised_here:
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (a no-op in a single process)."""
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_gather_objects(info: DistInfo, obj):
    """Every process's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_flag(info: DistInfo, flag: bool) -> bool:
    """Process 0's ``flag`` on every process (``flag`` itself in a single process)."""
    if not info.enabled:
        return flag
    import torch.distributed as dist

    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (which averages the gradients) in a distributed run,
    else ``model`` itself.

    Args:
        model: the network, already on ``device``.
        info: the run's ranks (:func:`init_distributed`); not ``enabled``: no wrapper.
        device: this process's device (a CUDA device is passed to DDP as ``device_ids``).

    Returns:
        the wrapped model, or ``model``.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, nn.Module) else model


# ---------------------------------------------------------------------------------- memory
def reset_peak_rss() -> None:
    """Start a new peak-RSS window for :func:`peak_rss_mb` (Linux: ``/proc/self/clear_refs``;
    elsewhere a no-op, and the peak is the process's since it started)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")


def peak_rss_mb() -> float:
    """The peak resident memory (MB) since :func:`reset_peak_rss` (Linux ``VmHWM``), else the
    process's peak; 0 where the platform says neither."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def rss_mb() -> float:
    """The resident memory (MB) now (Linux), else 0."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm") as fh:
            return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    return 0.0


#: CNN1's boxes at inference are widened to a multiple of this many pixels a side, and batches
#: rounded up to a power of two (:func:`bucket_span`, :func:`bucket_count`), so that a long
#: cohort runs the networks on a few input shapes: on a CPU, oneDNN builds and caches kernels for
#: every new shape, and a process scoring scan after scan grew with them
#: (benchmarks/soak_torchrun.py, benchmarks/README.md).
SHAPE_QUANTUM = 32


def bucket_span(lo: int, hi: int, n: int, quantum: int = SHAPE_QUANTUM) -> tuple[int, int]:
    """A span of an axis widened to a multiple of ``quantum`` positions.

    Args:
        lo, hi: the span, both ends included.
        n: the axis's length (positions 0 to n - 1).
        quantum: the widened span's length is a multiple of this (or all ``n``).

    Returns:
        ``(start, end)``, both included: inside ``[0, n)``, holding ``[lo, hi]``.
    """
    size = hi - lo + 1
    want = min(-(-size // quantum) * quantum, n)
    start = max(0, min(lo, n - want))
    return start, start + want - 1


def bucket_count(k: int, cap: int) -> int:
    """``k`` items of a batch of at most ``cap``, rounded up to a power of two (at most ``cap``)."""
    if k <= 0:
        return 0
    return min(cap, 1 << (k - 1).bit_length()) if k < cap else k


def pad_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """``index`` (1-D, not empty) padded to ``size`` entries by repeating its last one."""
    pad = size - len(index)
    return index if pad <= 0 else torch.cat([index, index[-1:].expand(pad)])


#: oneDNN's cache of CPU kernels, in kernels, while a cohort is scored (its default: 1,024)
ONEDNN_CACHE_KERNELS = "64"


def steady_memory() -> dict[str, str]:
    """Keep a process that scores scan after scan from growing; call before the first scan.

    oneDNN keeps up to 1,024 CPU kernels built for the shapes it met, and a process scoring scan
    after scan grew with them (benchmarks/soak_torchrun.py). Unless the environment already sets
    it, this caps that cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, read at its first use); the
    same whole-chest scan took as long with the cap. glibc's heap grows too, less; fixing its mmap
    threshold (``MALLOC_MMAP_THRESHOLD_``) holds it, but made that scan twice as slow, so it is
    left to the user (benchmarks/README.md).

    Returns:
        what was set: name -> value.
    """
    done = {}
    if "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ:
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = ONEDNN_CACHE_KERNELS
        done["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = ONEDNN_CACHE_KERNELS
        log.debug("steady memory: %s", done)
    return done


def release_memory() -> None:
    """Give freed memory back to the system after a scan: a garbage collection, then glibc's
    ``malloc_trim`` where there is glibc. Without it, a process scoring scan after scan kept
    ~250 MB more RSS after 25 tiny scans (glibc keeps freed arenas); with it, +29 MB after 40."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
