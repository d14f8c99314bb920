"""Chapter 09's efficiency toolkit: checkpointing equal to the plain call, batches that cover
every example once under their budget, packing that keeps the token stream, curriculum orders,
compile break-even arithmetic."""

import math

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from ssledu import efficient, models

pytestmark = pytest.mark.usefixtures("one_thread")


# --- gradient checkpointing -------------------------------------------------------------------


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Dropout(0.3), nn.Linear(32, 8),
                         nn.Dropout(0.3))


def _grads(module, *inputs):
    out = [p.grad.clone() for p in module.parameters()]
    return out + [x.grad.clone() for x in inputs if x.requires_grad]


def _run(module, x, how):
    """Output and every gradient (parameters, then x) of sum(out * w) under one seed."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(x.requires_grad)
    torch.manual_seed(123)
    if how == "plain":
        out = module(x)
    elif how == "ours":
        out = efficient.checkpoint(module, x)
    else:
        out = torch_checkpoint(module, x, use_reentrant=False)
    w = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * w).sum().backward()
    after = torch.rand(1)  # the RNG stream after backward: a replay must not shift it
    return out.detach(), _grads(module, x), after


@pytest.mark.parametrize("x_requires_grad", [True, False])
def test_checkpoint_mlp_equals_plain_and_torch(x_requires_grad):
    mlp = _mlp().train()
    x = torch.randn(5, 8).requires_grad_(x_requires_grad)
    plain, ours, ref = (_run(mlp, x, how) for how in ("plain", "ours", "torch"))
    for other in (ours, ref):
        torch.testing.assert_close(other[0], plain[0], rtol=0, atol=0)
        assert len(other[1]) == len(plain[1]) == 4 + x_requires_grad
        for g, g0 in zip(other[1], plain[1]):
            torch.testing.assert_close(g, g0, rtol=1e-6, atol=1e-7)
        assert other[2] == plain[2]


def test_checkpoint_without_rng_replay_draws_other_dropout_masks():
    # The bite of preserve_rng_state: without it the replay draws new masks, wrong gradients.
    mlp = _mlp().train()
    x = torch.randn(5, 8, requires_grad=True)
    plain = _run(mlp, x, "plain")
    mlp.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    out = efficient.checkpoint(mlp, x, preserve_rng_state=False)
    out.sum().backward()
    assert not torch.allclose(mlp[0].weight.grad, plain[1][0])


def test_checkpoint_gpt2_block_with_dropout(tiny_gpt):
    block = tiny_gpt.transformer.h[0].train()
    torch.manual_seed(1)
    hidden = torch.randn(2, 12, 64)

    def run(how):
        block.zero_grad(set_to_none=True)
        x = hidden.clone().requires_grad_()
        torch.manual_seed(7)
        if how == "plain":
            out = block(x)
        elif how == "ours":
            out = efficient.checkpoint(block, x)
        else:
            out = torch_checkpoint(block, x, use_reentrant=False)
        (out * torch.linspace(0, 1, out.numel()).reshape(out.shape)).sum().backward()
        return out.detach(), [p.grad.clone() for p in block.parameters()] + [x.grad.clone()]

    out0, g0 = run("plain")
    for how in ("ours", "torch"):
        out, g = run(how)
        torch.testing.assert_close(out, out0, rtol=0, atol=0)
        for a, b in zip(g, g0):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_gpt():
    torch.manual_seed(0)
    return models.gpt(64, "nano", dropout=0.1)


def _lm_batch(vocab=64, rows=3, length=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, vocab, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -5:] = 0  # one padded row: the attention mask travels through the checkpoint
    return dict(input_ids=ids, attention_mask=mask)


def _model_grads(model, batch, impl):
    model.train().zero_grad(set_to_none=True)
    with efficient.checkpoint_blocks(model, impl):
        torch.manual_seed(5)
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_checkpoint_blocks_whole_model_gradients(family):
    torch.manual_seed(0)
    model = getattr(models, family)(64, "nano", dropout=0.1)
    batch = _lm_batch()
    loss0, g0 = _model_grads(model, batch, None)
    for impl in ("ours", "torch"):
        loss, g = _model_grads(model, batch, impl)
        torch.testing.assert_close(loss, loss0, rtol=0, atol=0)
        assert g.keys() == g0.keys()
        for name in g0:
            torch.testing.assert_close(g[name], g0[name], rtol=1e-5, atol=1e-6, msg=name)
    # the context manager put the plain layers back
    assert all("forward" not in vars(layer) for layer in efficient.transformer_layers(model))


def test_checkpoint_blocks_really_recomputes(tiny_gpt):
    # A hook inside the first block counts its forwards: the replay in backward is a second.
    calls = []
    handle = tiny_gpt.transformer.h[0].ln_1.register_forward_hook(lambda *a: calls.append(1))
    batch = _lm_batch()
    try:
        for impl, expected in ((None, 1), ("ours", 2), ("torch", 2), (None, 1)):
            calls.clear()
            _model_grads(tiny_gpt, batch, impl)
            assert len(calls) == expected, impl
        calls.clear()
        with efficient.checkpoint_blocks(tiny_gpt, "ours"), torch.no_grad():
            tiny_gpt(**batch)  # no backward to come: the layer runs once, nothing saved
        assert len(calls) == 1
    finally:
        handle.remove()


def _saved(model, batch, impl):
    model.train()
    with efficient.checkpoint_blocks(model, impl):
        return efficient.saved_activation_bytes(
            lambda: model(**batch, labels=batch["input_ids"]).loss)


def test_saved_activation_bytes_checkpointing_saves_less_and_more_so_with_depth():
    batch = _lm_batch(rows=4, length=32)
    ratios = {}
    for depth in (2, 6):
        torch.manual_seed(0)
        model = models.gpt(64, "nano", n_layer=depth)
        plain, ours = _saved(model, batch, None), _saved(model, batch, "ours")
        assert 0 < ours < plain
        ratios[depth] = ours / plain
    assert ratios[6] < ratios[2] - 0.05, ratios


def test_saved_activation_bytes_exact_for_a_linear_layer():
    lin = nn.Linear(10, 7)
    x = torch.randn(4, 10, requires_grad=True)
    # y = x W^T + b saves x (for dW) and W (a parameter: not counted); relu saves its output.
    assert efficient.saved_activation_bytes(lambda: lin(x)) == 4 * 10 * 4
    assert efficient.saved_activation_bytes(lambda: lin(x).relu()) == 4 * 10 * 4 + 4 * 7 * 4
    with torch.no_grad():
        assert efficient.saved_activation_bytes(lambda: lin(x).relu()) == 0


def test_peak_memory_bytes_on_cpu_is_the_saved_count():
    lin = nn.Linear(10, 7)
    x = torch.randn(4, 10, requires_grad=True)
    assert efficient.peak_memory_bytes(lambda: lin(x), device="cpu") == 160


def test_checkpoint_bad_inputs():
    with pytest.raises(ValueError, match="unknown impl 'mine'.*'ours', 'torch' or None"):
        efficient.checkpoint_blocks(models.gpt(64, "nano"), "mine")
    with pytest.raises(ValueError, match="no transformer layers in Linear"):
        efficient.checkpoint_blocks(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="function"):
        efficient.checkpoint(torch.randn(3), torch.randn(3))
    lin = nn.Linear(3, 3)
    x = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="loss.backward"):
        torch.autograd.grad(efficient.checkpoint(lin, x).sum(), x)


# --- batching and packing ---------------------------------------------------------------------


def _sequences(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    # long-tailed lengths like real text: many short lines, a few long ones
    lengths = (torch.distributions.Exponential(1 / 20).sample((n,)).long() + 1).clamp(max=150)
    return [torch.randint(7, 100, (int(n_),), generator=g).tolist() for n_ in lengths]


def _every_index_once(batches, n):
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))


@pytest.mark.parametrize("shuffle", [True, False])
def test_fixed_batches_cover_every_index_once(shuffle):
    lengths = [len(s) for s in _sequences()]
    batches = efficient.fixed_batches(lengths, 32, shuffle=shuffle, seed=1)
    _every_index_once(batches, len(lengths))
    assert [len(b) for b in batches] == [32] * 9 + [12]
    assert (batches[0] == list(range(32))) != shuffle
    assert efficient.fixed_batches(lengths, 32, seed=1) == efficient.fixed_batches(lengths, 32, seed=1)
    assert efficient.fixed_batches(lengths, 32, seed=1) != efficient.fixed_batches(lengths, 32, seed=2)
    assert len(efficient.fixed_batches(lengths, 32, drop_last=True)) == 9


@pytest.mark.parametrize("bucket_size", [1, 50, 1000])
def test_token_budget_batches_cover_once_and_stay_under_budget(bucket_size):
    lengths = [len(s) for s in _sequences()]
    budget = 512
    batches = efficient.token_budget_batches(lengths, budget, seed=3, bucket_size=bucket_size)
    _every_index_once(batches, len(lengths))
    sizes = [len(b) * max(lengths[i] for i in b) for b in batches]
    assert max(sizes) <= budget
    if bucket_size == 1000:
        # One global sort: greedy filling wastes less than fixed batches of the same mean rows,
        # and most batches are nearly full.
        rows = round(len(lengths) / len(batches))
        fixed = efficient.padding_stats(lengths, efficient.fixed_batches(lengths, rows))
        ours = efficient.padding_stats(lengths, batches)
        assert ours["waste"] < fixed["waste"] / 3
        assert sum(s > budget * 0.7 for s in sizes) >= len(sizes) - 3


def test_token_budget_batches_greedy_fill_exact():
    # sorted lengths 1,2,3,4,10 under a budget of 10: [1,2,3] pads to 3*3 = 9; adding 4 would
    # pad to 4*4 = 16, so 4 starts a batch; 10 with it would be 2*10 = 20, so 10 is alone.
    lengths = [4, 1, 10, 3, 2]
    batches = efficient.token_budget_batches(lengths, 10, shuffle=False)
    assert [[lengths[i] for i in b] for b in batches] == [[1, 2, 3], [4], [10]]


def _brute_force_waste(lengths, batches):
    real = padded = 0
    for b in batches:
        width = max(lengths[i] for i in b)
        for i in b:
            for position in range(width):
                padded += 1
                real += position < lengths[i]
    return real, padded


def test_padding_stats_equal_a_brute_force_count():
    seqs = _sequences(120)
    lengths = [len(s) for s in seqs]
    for batches in (efficient.fixed_batches(lengths, 16, seed=0),
                    efficient.token_budget_batches(lengths, 300, seed=0)):
        stats = efficient.padding_stats(lengths, batches)
        real, padded = _brute_force_waste(lengths, batches)
        assert (stats["real_tokens"], stats["padded_tokens"]) == (real, padded)
        assert stats["waste"] == pytest.approx(1 - real / padded)
        # and equal to what collate_indices really builds
        tensors = list(efficient.collate_indices(seqs, batches, pad_id=0))
        assert sum(t["input_ids"].numel() for t in tensors) == padded
        assert sum(int(t["attention_mask"].sum()) for t in tensors) == real


def test_collate_indices_rows_are_the_sequences():
    seqs = _sequences(40)
    batches = efficient.token_budget_batches([len(s) for s in seqs], 200)
    for batch, out in zip(batches, efficient.collate_indices(seqs, batches, pad_id=0)):
        assert out["input_ids"].dtype == torch.long
        for row, i in enumerate(batch):
            n = len(seqs[i])
            assert out["input_ids"][row, :n].tolist() == seqs[i]
            assert out["attention_mask"][row].tolist() == [1] * n + [0] * (out["input_ids"].shape[1] - n)


def test_pack_round_trips_the_token_stream_and_wastes_nothing():
    seqs = _sequences(100)
    sep = 3
    blocks = efficient.pack(seqs, 64, sep_id=sep)
    stream = [t for s in seqs for t in s + [sep]]
    assert blocks.dtype == torch.long and blocks.shape == (len(stream) // 64, 64)
    assert blocks.flatten().tolist() == stream[:blocks.numel()]  # only the tail is dropped
    assert len(stream) - blocks.numel() < 64
    # every sequence that ends inside the blocks is found again between separators
    docs = blocks.flatten().tolist()
    pieces = [p for p in " ".join(map(str, docs)).split(f" {sep} ")][:5]
    assert pieces[0].split() == list(map(str, seqs[0]))
    stats = efficient.padding_stats([64] * len(blocks), efficient.fixed_batches([64] * len(blocks), 8))
    assert stats["waste"] == 0
    assert efficient.pack([torch.tensor([5, 6]), [7]], 2, sep_id=0).tolist() == [[5, 6], [0, 7]]


# --- curriculum ----------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["sorted", "competence", "random"])
def test_curriculum_order_is_a_seeded_permutation(schedule):
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(1, 40, (500,), generator=g).tolist()  # many ties
    order = efficient.curriculum_order(scores, schedule=schedule, seed=4)
    assert sorted(order) == list(range(500))
    assert order == efficient.curriculum_order(scores, schedule=schedule, seed=4)
    assert order != efficient.curriculum_order(scores, schedule=schedule, seed=5)
    first, last = (sum(scores[i] for i in part) / len(part) for part in (order[:100], order[-100:]))
    if schedule == "random":
        assert abs(first - last) < 5
    else:
        assert first < last - 15, (first, last)
    if schedule == "sorted":
        assert [scores[i] for i in order] == sorted(scores)


def test_competence_schedule_follows_the_square_root():
    scores = list(range(1000))  # score = rank, so an index is its own difficulty
    order = efficient.curriculum_order(scores, schedule="competence", seed=0)
    for t in (10, 100, 400, 900):
        allowed = max(t + 1, math.ceil(efficient.competence(t, 1000) * 1000))
        assert max(order[:t + 1]) < allowed  # never harder than the competence allows
    # early on the pool is larger than the steps taken: examples are sampled, not just sorted
    assert order[:50] != sorted(order[:50])
    assert efficient.competence(0, 100) == pytest.approx(0.01)
    assert efficient.competence(25, 100) == pytest.approx(math.sqrt(0.25 * (1 - 1e-4) + 1e-4))
    assert efficient.competence(100, 100) == efficient.competence(500, 100) == 1.0
    half = efficient.curriculum_order(scores, schedule="competence", ramp=0.5)
    assert max(half[:500]) > 900  # the whole data is allowed after half of the order


# --- torch.compile timing -------------------------------------------------------------------


def test_time_steps_counts_calls_and_measures_wall_time():
    calls = []
    times = efficient.time_steps(lambda: calls.append(1) or sum(range(20000)), 4, warmup=2)
    assert len(times) == 4 and len(calls) == 6
    assert all(t > 0 for t in times)
    import time as _time

    slept = efficient.time_steps(lambda: _time.sleep(0.02), 2, warmup=0)
    assert all(0.02 <= t < 0.5 for t in slept)  # wall time: sleeping counts


def test_breakeven_steps_arithmetic():
    assert efficient.breakeven_steps(30.0, 0.5, 0.2) == pytest.approx(100.0)
    assert efficient.breakeven_steps(0.0, 0.5, 0.2) == 0.0
    assert efficient.breakeven_steps(30.0, 0.2, 0.2) == math.inf
    assert efficient.breakeven_steps(30.0, 0.2, 0.3) == math.inf


def test_batching_bad_inputs():
    with pytest.raises(ValueError, match="lengths is empty"):
        efficient.fixed_batches([], 4)
    with pytest.raises(ValueError, match="max_tokens=50 is smaller than sequence 1, which has 60"):
        efficient.token_budget_batches([10, 60, 5], 50)
    with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
        efficient.pack([[1, 2, 3]], 1, sep_id=0)
    with pytest.raises(ValueError, match="fewer than one block"):
        efficient.pack([[1, 2]], 8, sep_id=0)
    with pytest.raises(TypeError, match=r"\[len\(s\) for s in sequences\]"):
        efficient.fixed_batches([[1, 2], [3]], 2)
    with pytest.raises(ValueError, match="index 9, outside 0..2"):
        efficient.padding_stats([1, 2, 3], [[0, 9]])
    with pytest.raises(ValueError, match="unknown schedule 'hard'.*sorted, competence, random"):
        efficient.curriculum_order([1, 2], schedule="hard")
    with pytest.raises(ValueError, match="compiled_step_s must be a finite"):
        efficient.breakeven_steps(1.0, 0.1, float("nan"))


def test_checkpoint_blocks_survive_a_deep_copy():
    # A copy (EMA teacher, best-model snapshot) must run its own weights, checkpointed.
    import copy

    torch.manual_seed(0)
    model = models.gpt(64, "nano", dropout=0.0)
    batch = _lm_batch()
    efficient.checkpoint_blocks(model, "ours")
    try:
        twin = copy.deepcopy(model)
        with torch.no_grad():
            for p in twin.parameters():
                p.mul_(0.5)
        loss_model, g_model = _model_grads(model, batch, "ours")
        loss_twin = twin(**batch, labels=batch["input_ids"]).loss
        assert loss_twin != loss_model
        efficient.checkpoint_blocks(twin, None)
        assert loss_twin == twin(**batch, labels=batch["input_ids"]).loss
    finally:
        efficient.checkpoint_blocks(model, None)


def test_checkpoint_replays_autocast():
    # Under bf16 autocast (fit's precision="bf16") the replay must compute in bf16 as well.
    mlp = _mlp().train()
    x = torch.randn(5, 8, requires_grad=True)
    grads = {}
    for how in ("plain", "ours"):
        mlp.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = mlp(x) if how == "plain" else efficient.checkpoint(mlp, x)
        out.float().sum().backward()
        grads[how] = [p.grad.clone() for p in mlp.parameters()]
    for a, b in zip(grads["ours"], grads["plain"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
