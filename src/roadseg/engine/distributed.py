"""torchrun / DDP helpers: the process group comes from torchrun's environment (RANK, WORLD_SIZE, ...).

Elastic restarts (torchrun --max-restarts N): when a worker dies, the agents stop the others and start the whole group
again with the same command line, TORCHELASTIC_RESTART_COUNT counting the restarts of each node's agent (a node whose
workers were only stopped because another node re-joined may still count 0, so the group takes the largest count).
While restarts are possible, every rank keeps a one-line status in RUN_DIR/.torchrun/rank<R>.json, so that the next
attempt can say which rank ended without a word (SIGKILL, the kernel's OOM killer, a lost node) and which were stopped.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist

from roadseg.data.io import atomic_write


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device: torch.device) -> tuple[int, int]:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1). gloo on CPU, NCCL on CUDA.
    A short timeout makes a job whose peer died fail within seconds instead of hanging."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=float(os.environ.get("ROADSEG_DIST_TIMEOUT", "120")))
        dist.init_process_group(backend, timeout=timeout)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return world()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum across ranks (CPU tensors go through the GPU under NCCL, which only reduces CUDA tensors)."""
    if world()[1] > 1:
        if dist.get_backend() == "nccl" and t.device.type != "cuda":
            tmp = t.cuda()
            dist.all_reduce(tmp, op=dist.ReduceOp.SUM)
            t.copy_(tmp.cpu())
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj) -> list:
    rank, size = world()
    if size == 1:
        return [obj]
    out = [None] * size
    dist.all_gather_object(out, obj)
    return out


def shard(items: list, rank: int | None = None, size: int | None = None) -> list:
    """Frames of this rank: every size-th item starting at rank (contiguous order kept within a rank)."""
    r, s = world()
    rank = r if rank is None else rank
    size = s if size is None else size
    return items[rank::size]


def elastic_job() -> dict | None:
    """torchrun's description of this worker's job (run_id, this node's restart count, max_restarts); None when
    not launched by torchrun."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    return {"run_id": os.environ["TORCHELASTIC_RUN_ID"], "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
            "max_restarts": int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))}


def restart_caveat(job: dict | None) -> str | None:
    """A warning for a job that may restart while its agents share their TCP store with the workers (torchrun's
    default): the store keeps the previous attempt's keys, so a restarted group's ranks can read the dead workers'
    addresses and fail to connect (pytorch/pytorch#135712), spending a restart. None when there is nothing to say."""
    if job is None or job["max_restarts"] == 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    return ("torchrun --max-restarts with the agents' shared store: set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 where "
            "torchrun starts, or a restarted group may connect to the dead workers' addresses and fail again")


def group_restart(job: dict | None) -> int:
    """How often torchrun has restarted this group: the largest restart count over the ranks (0 outside torchrun)."""
    if job is None:
        return 0
    return max(all_gather_objects(job["restart"]))


def _write_record(path: Path, record: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(record) + "\n"), text=True, fsync=False)


@contextlib.contextmanager
def attempt_record(run_dir: str | Path, job: dict | None):
    """Record this rank's status in the attempt ('running', then 'finished' or the exception that ended it) in
    run_dir/.torchrun/rank<R>.json while torchrun may restart the job; yields the previous attempt's records of this
    job (every rank's, gathered), [] on a first attempt or without restarts. Every rank calls it."""
    if job is None or job["max_restarts"] == 0:
        yield []
        return
    rank = world()[0]
    path = Path(run_dir) / ".torchrun" / f"rank{rank}.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    previous = [r for r in all_gather_objects(old) if r and r.get("run_id") == job["run_id"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run_id": job["run_id"], "rank": rank, "host": socket.gethostname(), "pid": os.getpid(),
              "restart": job["restart"], "status": "running"}
    _write_record(path, record)
    try:
        yield previous
    except BaseException as exc:
        _write_record(path, {**record, "status": _ended(exc)})
        raise
    _write_record(path, {**record, "status": "finished"})


def _ended(exc: BaseException) -> str:
    """What ended a rank: a signal (SIGTERM from its agent, which stops the other workers when one fails; SIGINT),
    also when a library turned it into its own error (torch.save makes it a RuntimeError), else the exception."""
    seen = exc
    while seen is not None:
        if type(seen).__name__ in ("Terminated", "KeyboardInterrupt"):
            return f"stopped ({'SIGTERM' if type(seen).__name__ == 'Terminated' else 'SIGINT'})"
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {exc}".rstrip(": ")[:300]


def describe_attempt(records: list[dict]) -> str:
    """One line on how the previous attempt ended, from its ranks' records: a rank still 'running' there ended
    without a word (killed: SIGKILL, the OOM killer, or its node lost); the others say what stopped them."""
    if not records:
        return "no record of the previous attempt"
    silent = [f"rank {r['rank']} ({r['host']}, pid {r['pid']})" for r in records if r["status"] == "running"]
    spoke = [f"rank {r['rank']}: {r['status']}" for r in records if r["status"] != "running"]
    died = f"{', '.join(silent)} ended without a word (killed, or its node lost)" if silent else ""
    return "; ".join(p for p in (died, ", ".join(spoke)) if p)
