"""Data parallelism on 2 CPU processes (gloo) equals one process on the whole batch.

One spawn of two processes (a file rendezvous: no port, and a 30 s timeout so a process
that never arrives fails the test instead of hanging it) computes every check; rank 0
writes what it measured to a JSON file, and each test reads its part:

- DDP gradients of a token loss equal the one-process gradients of the full batch, when
  the loss is normalised by the global token count (and differ with a mean of means);
- a short ``fit`` under DDP logs the losses of a one-process ``fit`` with the same
  global batch;
- InfoNCE on embeddings gathered with ``all_gather_with_grad`` equals ``nt_xent`` on the
  concatenated batch, loss and gradients.
"""

from __future__ import annotations

import copy
import json
import os
from types import SimpleNamespace

import pytest
import torch

from ssledu import distributed
from ssledu.data.blocks import EpochBatches
from ssledu.objectives.clm import clm_collator
from ssledu.objectives.contrastive import nt_xent
from ssledu.pretrain import TokenLoss
from ssledu.train import fit

V, L, WORLD = 40, 12, 2


class TinyLM(torch.nn.Module):
    """Next-token logits from the running mean of the embeddings so far: a causal language
    model in two layers, so that the two processes start without importing transformers."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.embed, self.out = torch.nn.Embedding(V, width), torch.nn.Linear(width, V)

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids).cumsum(1)  # (B, L, width): position t sums tokens 0..t
        h = h / torch.arange(1, input_ids.size(1) + 1).view(1, -1, 1)
        return SimpleNamespace(logits=self.out(torch.tanh(h)))  # (B, L, V)


def _gpt():
    torch.manual_seed(0)
    return TinyLM()


def _ragged(n: int, seed: int = 0) -> list[list[int]]:
    """Sequences of 3..L ids: the two processes hold different numbers of label tokens."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, L + 1, (n,), generator=g).tolist()
    return [torch.randint(7, V, (k,), generator=g).tolist() for k in lengths]


def _fit(model, data, batch_size):
    history = fit(model, data, collate_fn=clm_collator(0), batch_size=batch_size, lr=3e-3, max_steps=6,
                  warmup_steps=0, loss_fn=TokenLoss(shift=True), device="cpu", precision="fp32", seed=0,
                  progress=False, live_plot=False)
    return [s["loss"] for s in history.steps]


def _grads(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def _worker(rank: int, init_file: str, out: str):
    torch.set_num_threads(1)
    distributed.init(init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout_s=30, device="cpu")
    result = {}
    loss_fn = TokenLoss(shift=True)
    collate = clm_collator(0)

    # 1. gradients: each process half of one batch through DDP vs the whole batch here
    batch = collate(_ragged(8, seed=1))
    half = {k: v[rank * 4:(rank + 1) * 4] for k, v in batch.items()}
    model = _gpt()
    single = copy.deepcopy(model)
    ddp = distributed.wrap(model, torch.device("cpu"))
    loss, _ = loss_fn(ddp, half)
    loss.backward()
    total, n, _ = loss_fn.sums(single, batch)  # one process: the plain token mean
    (total / n).backward()
    naive = copy.deepcopy(single)  # a mean of the two halves' means, for contrast
    naive.zero_grad()
    halves = [loss_fn.sums(naive, {k: v[i * 4:(i + 1) * 4] for k, v in batch.items()}) for i in range(2)]
    (sum(t / c for t, c, _ in halves) / 2).backward()
    result["grad_diff"] = float((_grads(model) - _grads(single)).abs().max())
    result["grad_scale"] = float(_grads(single).abs().max())
    result["naive_diff"] = float((_grads(naive) - _grads(single)).abs().max())
    result["labels_per_rank"] = [int(c) for _, c, _ in halves]

    # 2. a short fit: 2 processes x 4 rows against one process x 8 rows (in the test)
    result["fit_losses"] = _fit(_gpt(), _ragged(48, seed=2), batch_size=4)

    # 3. InfoNCE over the global batch, with the negatives of both processes
    torch.manual_seed(0)
    encoder = torch.nn.Linear(6, 5)
    reference = copy.deepcopy(encoder)
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    mine = slice(rank * 4, (rank + 1) * 4)
    ddp_encoder = distributed.wrap(encoder, torch.device("cpu"))  # kept: a dropped DDP averages nothing
    z = ddp_encoder(torch.cat([x1[mine], x2[mine]]))  # (8, 5): this process's rows of both views
    z1, z2 = distributed.all_gather_with_grad(z[:4]), distributed.all_gather_with_grad(z[4:])  # (8, 5)
    gathered = nt_xent(z1, z2, temperature=0.5)
    gathered.backward()
    whole = nt_xent(reference(x1), reference(x2), temperature=0.5)
    whole.backward()
    result["nce_loss"], result["nce_single"] = float(gathered.detach()), float(whole.detach())
    result["nce_grad_diff"] = float((_grads(encoder) - _grads(reference)).abs().max())
    result["nce_grad_scale"] = float(_grads(reference).abs().max())
    if rank == 0:
        with open(out, "w") as f:
            json.dump(result, f)
    distributed.shutdown()


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    out = folder / "rank0.json"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.multiprocessing.start_processes(_worker, args=(str(folder / "rendezvous"), str(out)), nprocs=WORLD,
                                          start_method="spawn", join=True)
    return json.loads(out.read_text())


def test_ddp_gradients_equal_the_full_batch_gradients(ddp):
    assert ddp["labels_per_rank"][0] != ddp["labels_per_rank"][1]  # the case where normalisation matters
    assert ddp["grad_diff"] < 1e-6 * max(1.0, ddp["grad_scale"])
    # the trap: averaging the two processes' own means weighs their tokens unequally
    assert ddp["naive_diff"] > 100 * max(ddp["grad_diff"], 1e-9)


def test_ddp_fit_logs_the_losses_of_one_process_with_the_global_batch(ddp):
    torch.set_num_threads(1)
    single = _fit(_gpt(), _ragged(48, seed=2), batch_size=4 * WORLD)
    assert len(single) == len(ddp["fit_losses"]) == 6
    assert single[-1] < single[0]
    assert ddp["fit_losses"] == pytest.approx(single, abs=2e-5)


def test_infonce_on_gathered_embeddings_equals_the_concatenated_batch(ddp):
    assert ddp["nce_loss"] == pytest.approx(ddp["nce_single"], abs=1e-6)
    assert ddp["nce_grad_diff"] < 1e-6 * max(1.0, ddp["nce_grad_scale"])


def test_sharded_batches_are_slices_of_the_one_process_batches():
    whole = list(EpochBatches(20, 8, seed=3, drop_last=True))
    shards = [list(distributed.ShardedBatches(20, 4, rank=r, world_size=2, seed=3)) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == whole
    resumed = distributed.ShardedBatches(20, 4, rank=1, world_size=2, seed=3)
    resumed.set_epoch(0, skip=1)
    assert list(resumed) == shards[1][1:]


def test_single_process_helpers_do_nothing():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert float(distributed.global_count(torch.tensor(7))) == 7.0
    assert distributed.agree(2) == 2
    info = distributed.init(device="cpu")
    assert (info.world_size, info.backend) == (1, None)


def test_init_refuses_bad_settings_in_words(monkeypatch):
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        distributed.init(timeout_s=0)
    with pytest.raises(ValueError, match=r"rank 3 is outside 0..1"):
        distributed.init(rank=3, world_size=2, device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not a whole number"):
        distributed.init(device="cpu")


def test_init_fails_fast_when_a_process_never_arrives(tmp_path):
    with pytest.raises(TimeoutError, match=r"process 0 of 2 waited 2 s .* not all 2 processes arrived"):
        distributed.init(init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=2, timeout_s=2,
                         device="cpu")
    assert distributed.world_size() == 1  # no half-made process group left behind
