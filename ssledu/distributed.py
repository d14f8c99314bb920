"""Data-parallel training on several processes (PyTorch DDP), as ``torchrun`` starts it.

``torchrun --standalone --nproc_per_node K script.py`` starts K copies of a script and
gives each one ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in its
environment. Each copy holds the whole model, reads its own share of every batch, and
DDP averages the gradients over the copies during ``backward()``, so the K models take
the same optimizer step::

    info = distributed.init()             # reads torchrun's variables; K = 1 without torchrun
    history = fit(model, blocks, ...)     # fit wraps the model in DDP and shards the batches
    distributed.shutdown()

What this module gives:

- ``init`` / ``shutdown``: the process group (gloo on the CPU, nccl on CUDA GPUs) with a
  timeout, so a process that never arrives fails the run instead of hanging it;
  ``rank``, ``world_size``, ``is_main``, ``barrier``.
- ``ShardedBatches``: the batch sampler of a K-process run. Step ``s`` uses the same
  global batch as a single process with batch size ``K * B`` (``make_loader``'s seeded
  order), and process ``r`` takes rows ``r*B .. (r+1)*B - 1`` of it; ``set_epoch`` as
  torch's ``DistributedSampler``. ``shard_loader`` builds the loader.
- ``global_count``, ``mean_over_ranks``: a token loss normalised by the tokens of ALL
  processes, not a mean of per-process means (the two differ when processes hold
  different numbers of labels, as masked LM batches do).
- ``all_gather_with_grad``: gather embeddings from every process so that a contrastive
  loss sees the whole global batch as negatives, and gradients flow back to the process
  that made each row (SimCLR's "global batch normalisation" of negatives).
- ``RankCollator``: a seeded collator per process, with its own stream of random masks.

Sources: PyTorch's DDP tutorial and ``torch.distributed`` docs (gloo/nccl, ``set_epoch``);
Chen et al. 2020 (SimCLR: negatives gathered over all cores); transformers' Trainer
(``num_items_in_batch``: loss divided by the global number of label tokens).
"""

from __future__ import annotations

import datetime
import os
import zlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ssledu.data.blocks import EpochBatches

__all__ = [
    "DistInfo",
    "init",
    "shutdown",
    "is_active",
    "rank",
    "world_size",
    "is_main",
    "barrier",
    "wrap",
    "ShardedBatches",
    "shard_loader",
    "global_count",
    "mean_over_ranks",
    "agree",
    "broadcast_object",
    "all_gather_with_grad",
    "RankCollator",
]

DEFAULT_TIMEOUT_S = 120.0  # a collective that waits longer than this fails the run


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its
    machine, the ``backend`` ("gloo" / "nccl", None for a single process) and ``device``."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None
    device: torch.device


def is_active() -> bool:
    """True when a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's number, 0 .. world_size - 1 (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes training together (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the process that prints and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process arrives here (nothing to do for a single process)."""
    if is_active():
        dist.barrier()


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a whole number; torchrun "
                         "sets it, so unset it when you run without torchrun") from None


def init(*, backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, init_method: str | None = None,
         rank: int | None = None, world_size: int | None = None, device=None) -> DistInfo:
    """Join the process group that torchrun (or the caller) set up; return a :class:`DistInfo`.

    rank / world_size: default ``RANK`` / ``WORLD_SIZE`` from the environment (torchrun's);
    without them (a plain ``python`` run) there is one process and nothing is started.
    backend: "gloo" (CPU) or "nccl" (CUDA); default nccl when this process trains on a GPU.
    init_method: default ``env://`` (torchrun's ``MASTER_ADDR`` / ``MASTER_PORT``);
    ``file:///path`` is a rendezvous through a shared file (tests, no port needed).
    timeout_s: how long any collective (the rendezvous included) may wait for the others
    before the run fails with an error naming the timeout.
    On a GPU, process ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK`` (one GPU per process).
    """
    from ssledu import get_device

    world = world_size if world_size is not None else (_env_int("WORLD_SIZE") or 1)
    r = rank if rank is not None else (_env_int("RANK") or 0)
    local = _env_int("LOCAL_RANK")
    local = r if local is None else local
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds; got {timeout_s!r}")
    if world < 1 or not 0 <= r < world:
        raise ValueError(f"rank {r} is outside 0..{world - 1} (WORLD_SIZE={world})")
    dev = torch.device(device) if device is not None else get_device()
    if dev.type == "cuda" and dev.index is None and world > 1:
        if local >= torch.cuda.device_count():
            raise ValueError(f"process LOCAL_RANK={local} has no GPU: this machine has "
                             f"{torch.cuda.device_count()}; start at most that many processes "
                             "per machine (torchrun --nproc_per_node)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world == 1:
        return DistInfo(0, 1, 0, None, dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' (CPU) or 'nccl' (CUDA GPUs); got {backend!r}")
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError("the nccl backend needs CUDA GPUs; use backend='gloo' on the CPU")
    if not dist.is_initialized():
        where = init_method or "env://"
        try:
            dist.init_process_group(backend, init_method=where, rank=r, world_size=world,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except RuntimeError as err:  # torch says only "Wait timeout" when a process never came
            if "time" not in str(err).lower():
                raise
            raise TimeoutError(f"process {r} of {world} waited {timeout_s:g} s at {where} and not all "
                               f"{world} processes arrived ({err}); start all of them (torchrun "
                               "--nproc_per_node) or give them more time (timeout_s)") from err
    return DistInfo(r, world, local, backend, dev)


def shutdown() -> None:
    """Leave the process group (safe to call when none is running)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when several processes run, else ``model`` itself.

    DDP copies rank 0's weights to every process at construction, then averages the
    gradients over the processes inside ``backward()``.
    """
    if not is_active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


# --- data: every process its share of each global batch ---------------------------------


class ShardedBatches(EpochBatches):
    """Process ``rank``'s share of the global batches of ``EpochBatches(n, world * B)``.

    Epoch ``e`` is the permutation seeded by ``(seed, e)`` that a single process with batch
    size ``world * batch_size`` would use; each global batch is cut into ``world`` slices
    of ``batch_size`` rows and this process yields slice ``rank``. So K processes with
    batch size B train on exactly the batches of one process with batch size K * B.
    The last, partial global batch is dropped (every process must take every step).
    ``set_epoch(e, skip)`` as in ``EpochBatches`` (how a resumed run finds its place).
    """

    def __init__(self, n: int, batch_size: int, *, rank: int, world_size: int, shuffle: bool = True,
                 seed: int = 0):
        super().__init__(n, batch_size * world_size, shuffle=shuffle, seed=seed, drop_last=True)
        self.rank, self.world_size, self.local_batch = rank, world_size, batch_size

    def __iter__(self):
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        return (rows[lo:hi] for rows in super().__iter__())


def shard_loader(data, batch_size: int, *, seed: int = 0, shuffle: bool = True, collate_fn=None,
                 pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``data`` (tensor, dict of tensors, list, Dataset) whose batches are
    this process's ``batch_size`` rows of each global batch (see :class:`ShardedBatches`)."""
    from ssledu.data.blocks import TokenBlocks, _stack

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(data, (torch.Tensor, dict)):
        data = TokenBlocks(data)
    n, k = len(data), world_size()
    if n < batch_size * k:
        raise ValueError(f"{n} examples cannot fill one global batch of {k} processes x "
                         f"{batch_size} = {batch_size * k}; use a smaller batch size or more data")
    sampler = ShardedBatches(n, batch_size, rank=rank(), world_size=k, shuffle=shuffle, seed=seed)
    return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=collate_fn or _stack,
                                       pin_memory=pin_memory)


# --- losses over all processes ----------------------------------------------------------


def global_count(count) -> torch.Tensor:
    """The sum of ``count`` (a number or 0-d tensor) over all processes, as a float tensor."""
    total = torch.as_tensor(count, dtype=torch.float64).clone()
    if is_active():
        if dist.get_backend() == "nccl":
            total = total.cuda()
        dist.all_reduce(total)
    return total


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) scalar over all processes; the value itself for one process."""
    if not is_active():
        return value
    total = value.detach().float().clone()
    dist.all_reduce(total)
    return total / world_size()


def agree(code: int) -> int:
    """Rank 0's ``code`` on every process (one decision, e.g. whether to stop, for all)."""
    if not is_active():
        return code
    t = torch.tensor([code], dtype=torch.long)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, src=0)
    return int(t.item())


def broadcast_object(obj):
    """Rank 0's ``obj`` (any picklable value) on every process; ``obj`` itself for one process."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gradient of every copy and returns this
    process's slice (each row's loss terms live on all processes)."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads):
        g = torch.stack(grads)  # (K, *x.shape): gradient w.r.t. each process's rows, here
        dist.all_reduce(g)      # ... summed over the processes that used them in a loss
        return g[dist.get_rank()]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (B, ...) from every process, concatenated in rank order: (K * B, ...).

    Unlike ``dist.all_gather`` (whose result has no gradient), the backward pass sends
    each process the gradient of its own rows, summed over every process's loss; with the
    loss of each process divided by K as DDP averages, the gradient equals that of one
    process computing the loss on the whole batch. Every process must pass the same shape.
    """
    if not is_active():
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


# --- a seeded collator per process ------------------------------------------------------


def _reseed(obj, rank_: int) -> None:
    """Move every torch.Generator of ``obj`` to a stream of its own for process ``rank_``,
    derived from the generator's state, so the same state gives the same streams."""
    for name, g in vars(obj).items():
        if isinstance(g, torch.Generator):
            state = zlib.crc32(g.get_state().numpy().tobytes())
            g.manual_seed(state * 1_000_003 + rank_)


class RankCollator:
    """A seeded collator (``MLMCollator``, ``BARTCollator``, ``UniLMMixture``) for process ``rank``.

    Every process builds its collator with the same seed; without this, all of them would
    draw the same masks for their different rows. Rank 0 keeps the collator's own stream
    (so a one-process run is unchanged, and rank 0 resumes exactly); rank r > 0 moves it to
    a stream derived from the state and r, at the start and after ``load_state_dict``
    (a resumed K-process run therefore masks ranks 1.. afresh, deterministically).
    ``state_dict`` / ``fork`` are the collator's.
    """

    def __init__(self, collate, rank_: int | None = None):
        self.collate = collate
        self.rank = rank() if rank_ is None else rank_
        if self.rank:
            _reseed(collate, self.rank)

    def __call__(self, examples):
        return self.collate(examples)

    def state_dict(self) -> dict:
        return self.collate.state_dict()

    def load_state_dict(self, state) -> None:
        self.collate.load_state_dict(state)
        if self.rank:
            _reseed(self.collate, self.rank)

    def fork(self, seed: int = 0):
        return self.collate.fork(seed)

    def __repr__(self):
        return f"RankCollator({self.collate!r}, rank={self.rank})"
