"""Two-process DistributedDataParallel training on CPU (gloo)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from test_training import tiny_config, tiny_scans  # noqa: E402

from calcscore.sampling import load_cached  # noqa: E402
from calcscore.training import train  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        root = Path(folder)
        scans = [load_cached(root / "cache" / f"t{i}") for i in range(3)]
        val = [load_cached(root / "cache" / "v0")]
        cfg = tiny_config(max_iterations=4, eval_every=2, checkpoint_every=2)
        seen = []
        result = train(
            cfg, scans, val, root / "out", progress=False, callback=lambda it, loss: seen.append(it)
        )
        torch.save(
            {"iterations": seen, "model": result.model.state_dict()}, root / f"rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    tiny_scans(tmp_path / "cache", 3, prefix="t")
    tiny_scans(tmp_path / "cache", 1, seed=9, prefix="v")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["iterations"] == r1["iterations"] == [1, 2, 3, 4]
    ckpt = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["sampler"]) == 2
    assert ckpt["sampler"][0] != ckpt["sampler"][1]  # each process draws its own batches
    assert ckpt["metrics"][-1]["patches"] == 4 * 8 * 2
    # different batches on each process, yet identical weights: the gradients were averaged
    assert r0["model"].keys() == ckpt["model"].keys()
    for k, v in ckpt["model"].items():
        assert torch.equal(r0["model"][k], v) and torch.equal(r1["model"][k], v), k
    assert (tmp_path / "out" / "metrics.csv").is_file()
