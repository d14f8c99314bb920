"""Contrastive objectives: losses against a reference and a double loop, the analytic
minimum, no gradient into MoCo's queue or key encoder, seeded views, a MoCo loop that learns."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssledu.objectives import contrastive as C


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cos(a, b) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


# --- losses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, tau", [(2, 0.5), (5, 0.1), (16, 0.07), (31, 1.0)])
def test_nt_xent_equals_pytorch_metric_learning(n, tau):
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    g = gen(n)
    z1, z2 = torch.randn(n, 12, generator=g), torch.randn(n, 12, generator=g)
    z2 = z2 + 2 * z1  # positives closer than negatives, as after some training
    reference = pml.SelfSupervisedLoss(pml.NTXentLoss(temperature=tau), symmetric=True)(z1, z2)
    ours = C.nt_xent(z1, z2, temperature=tau)
    # pytorch-metric-learning adds a tiny epsilon inside the log: allclose, not equal.
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-6), (ours, reference)
    assert torch.allclose(C.nt_xent(z1, z2, tau, reduction="simclr"), 2 * reference, rtol=1e-5)
    per_anchor = C.nt_xent(z1, z2, tau, reduction="none")
    assert per_anchor.shape == (2 * n,)
    assert torch.allclose(C.nt_xent(z1, z2, tau, reduction="sum"), per_anchor.sum())


def brute_force_nt_xent(z1, z2, tau):
    z = [*z1, *z2]
    n = len(z1)
    total = 0.0
    for a in range(2 * n):
        positive = (a + n) % (2 * n)
        denominator = sum(math.exp(cos(z[a], z[k]) / tau) for k in range(2 * n) if k != a)
        total += -math.log(math.exp(cos(z[a], z[positive]) / tau) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n, tau", [(2, 0.5), (3, 0.2), (7, 0.05)])
def test_nt_xent_equals_a_double_loop(n, tau):
    g = gen(100 + n)
    z1, z2 = torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g,
                                                                              dtype=torch.float64)
    assert C.nt_xent(z1, z2, tau).item() == pytest.approx(brute_force_nt_xent(z1, z2, tau), rel=1e-5)


def test_info_nce_variants_equal_double_loops():
    g = gen(7)
    n, k, tau = 4, 6, 0.05
    q, key = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)
    neg = torch.randn(k, 5, generator=g)
    # SimCSE, one direction: query i against the N keys.
    simcse = sum(-math.log(math.exp(cos(q[i], key[i]) / tau)
                           / sum(math.exp(cos(q[i], key[j]) / tau) for j in range(n))) for i in range(n)) / n
    assert C.simcse_loss(q, key).item() == pytest.approx(simcse, rel=1e-5)
    # The swapped direction is a different number: the loss is one-directional.
    assert C.simcse_loss(key, q).item() != pytest.approx(simcse, rel=1e-3)
    # Supervised SimCSE: the N positives and the N hard negatives are the candidates.
    hard = neg[:n]
    sup = sum(-math.log(math.exp(cos(q[i], key[i]) / tau)
                        / sum(math.exp(cos(q[i], c) / tau) for c in [*key, *hard])) for i in range(n)) / n
    assert C.simcse_supervised_loss(q, key, hard).item() == pytest.approx(sup, rel=1e-5)
    # MoCo: own key plus the queue, never the other keys of the batch.
    queue = C.MoCoQueue(5, k, generator=gen(1))
    queue.keys.copy_(nn.functional.normalize(neg, dim=1))
    moco = sum(-math.log(math.exp(cos(q[i], key[i]) / 0.07)
                         / (math.exp(cos(q[i], key[i]) / 0.07)
                            + sum(math.exp(cos(q[i], c) / 0.07) for c in neg))) for i in range(n)) / n
    assert C.moco_loss(q, key, queue).item() == pytest.approx(moco, rel=1e-5)


def simplex(n: int, d: int) -> torch.Tensor:
    """n unit vectors with pairwise cosine -1/(n-1): the regular simplex (d >= n)."""
    e = torch.eye(n, d, dtype=torch.float64)
    return nn.functional.normalize(e - e.mean(dim=0), dim=1)


@pytest.mark.parametrize("n, tau", [(4, 0.5), (6, 0.3)])
def test_aligned_uniform_embeddings_reach_the_analytic_minimum(n, tau):
    z = simplex(n, n + 2)
    # Each anchor: positive cos 1; 2(n-1) negatives, all at cos -1/(n-1).
    minimum = -1 / tau + math.log(math.exp(1 / tau) + 2 * (n - 1) * math.exp(-1 / (tau * (n - 1))))
    assert C.nt_xent(z, z, tau).item() == pytest.approx(minimum, rel=1e-9)
    assert C.alignment(z, z).item() == 0.0
    assert C.uniformity(z).item() == pytest.approx(-2 * 2 * n / (n - 1), rel=1e-9)  # ||xi-xj||^2 = 2n/(n-1)
    # Free embeddings trained on the loss itself reach the minimum, never pass it, and end
    # aligned and on the simplex (the minimiser is unique up to a rotation).
    torch.manual_seed(0)
    free1 = nn.Parameter(torch.randn(n, n + 2, dtype=torch.float64))
    free2 = nn.Parameter(torch.randn(n, n + 2, dtype=torch.float64))
    opt = torch.optim.Adam([free1, free2], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        loss = C.nt_xent(free1, free2, tau)
        assert loss.item() >= minimum - 1e-9
        loss.backward()
        opt.step()
    assert loss.item() == pytest.approx(minimum, abs=1e-9)
    assert C.alignment(free1, free2).item() < 1e-9
    assert C.uniformity(free1).item() == pytest.approx(-2 * 2 * n / (n - 1), rel=1e-6)


def test_collapsed_embeddings_score_worst_uniformity_and_the_loss_of_a_guess():
    z = torch.ones(8, 4)
    assert C.uniformity(z).item() == pytest.approx(0.0, abs=1e-6)  # the maximum: all in one point
    # All similarities equal: a uniform guess among the 2N - 1 candidates.
    assert C.nt_xent(z, z, 0.5).item() == pytest.approx(math.log(15), rel=1e-5)


# --- MoCo pieces ------------------------------------------------------------------------------


def test_no_gradient_flows_into_the_queue_or_the_momentum_encoder():
    torch.manual_seed(0)
    query_encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    key_encoder = C.momentum_encoder(query_encoder)
    queue = C.MoCoQueue(4, 10, generator=gen(0))
    x1, x2 = torch.randn(5, 6), torch.randn(5, 6)
    q = query_encoder(x1)
    with torch.no_grad():
        C.momentum_update(key_encoder, query_encoder, 0.99)
        k = key_encoder(x2)
    loss = C.moco_loss(q, k, queue)
    loss.backward()
    assert all(p.grad is not None for p in query_encoder.parameters())
    assert all(p.grad is None and not p.requires_grad for p in key_encoder.parameters())
    assert queue.keys.grad is None and not queue.keys.requires_grad
    # Even keys that carry a graph enter the queue detached.
    queue.enqueue(query_encoder(x2))
    assert not queue.keys.requires_grad and queue.keys.grad_fn is None


def test_queue_is_first_in_first_out_with_fixed_size():
    queue = C.MoCoQueue(3, 6, generator=gen(0))
    first = nn.functional.normalize(torch.randn(4, 3, generator=gen(1)), dim=1)
    second = nn.functional.normalize(torch.randn(4, 3, generator=gen(2)), dim=1)
    start = queue.keys.clone()
    queue.enqueue(first)
    assert torch.allclose(queue.keys[:4], first) and torch.equal(queue.keys[4:], start[4:])
    queue.enqueue(second)  # rows 4, 5, then wraps to 0, 1: the oldest go first
    assert torch.allclose(queue.keys[4:], second[:2]) and torch.allclose(queue.keys[:2], second[2:])
    assert torch.allclose(queue.keys[2:4], first[2:])
    assert queue.keys.shape == (6, 3) and len(queue) == 6 and int(queue.ptr) == 2


def test_momentum_update_is_the_exponential_moving_average():
    torch.manual_seed(0)
    q_enc = nn.Linear(3, 2)
    k_enc = nn.Linear(3, 2)
    before = k_enc.weight.detach().clone()
    C.momentum_update(k_enc, q_enc, 0.9)
    assert torch.allclose(k_enc.weight, 0.9 * before + 0.1 * q_enc.weight.detach())
    C.momentum_update(k_enc, q_enc, 0.0)  # m = 0 copies
    assert torch.equal(k_enc.bias, q_enc.bias.detach())


def test_a_hand_written_moco_loop_on_digits_learns():
    from ssledu.data.blocks import BatchStream, make_loader
    from ssledu.data.digits import load_digits_images
    from ssledu.train import History, cosine_lr, param_groups

    torch.manual_seed(0)
    images = torch.from_numpy(load_digits_images()["images"][:512])  # (512, 8, 8)
    stream = BatchStream(make_loader(images, batch_size=32, seed=0, drop_last=True))
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
    key_encoder = C.momentum_encoder(encoder)
    queue = C.MoCoQueue(16, 128, generator=gen(0))
    opt = torch.optim.AdamW(param_groups(encoder, 1e-4), lr=1e-2)
    views = dict(max_degrees=0, cutout_size=0)  # shift + noise: learnable in 100 steps

    held_out = images[512 - 64:]
    g_fixed = gen(9)
    fixed1, fixed2 = (C.augment_digits(held_out, generator=g_fixed, **views) for _ in range(2))

    def in_batch_loss():  # 64-way: ln 64 = 4.16 for a guess
        with torch.no_grad():
            return C.info_nce(encoder(fixed1), encoder(fixed2), temperature=0.1).item()

    before = in_batch_loss()
    g, history, steps = gen(1), History(), 100
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step - 1, lr=1e-2, warmup_steps=5, total_steps=steps)
        x = stream.next()  # (32, 8, 8)
        view1 = C.augment_digits(x, generator=g, **views)
        view2 = C.augment_digits(x, generator=g, **views)
        q = encoder(view1)  # (32, 16)
        with torch.no_grad():
            C.momentum_update(key_encoder, encoder, 0.99)
            k = key_encoder(view2)
        loss = C.moco_loss(q, k, queue, temperature=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        queue.enqueue(k)  # after the loss: a key is never its own query's negative
        history.steps.append({"step": step, "loss": loss.item()})
    losses = [s["loss"] for s in history.steps]
    # The first 4 steps meet the random unit vectors the queue starts with (easy negatives);
    # from step 5 on the negatives are real keys, so the loss is compared from there.
    early, late = sum(losses[10:20]) / 10, sum(losses[-10:]) / 10
    assert late < early - 0.3, (early, late)
    assert in_batch_loss() < before - 0.5, (before, in_batch_loss())


# --- views ------------------------------------------------------------------------------------

IMAGE_VIEWS = [C.random_shift, C.random_rotation, C.gaussian_noise, C.cutout, C.augment_digits]


@pytest.mark.parametrize("view", IMAGE_VIEWS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(6, 8, 8), (6, 1, 8, 8)])
def test_image_views_are_seeded_and_keep_shape_and_dtype(view, shape):
    x = torch.rand(shape, generator=gen(0)) * 0.8 + 0.1
    a, b, c = view(x, generator=gen(5)), view(x, generator=gen(5)), view(x, generator=gen(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_image_views_do_what_they_say():
    dot = torch.zeros(50, 8, 8)
    dot[:, 4, 4] = 1.0
    shifted = C.random_shift(dot, 1, generator=gen(0))
    where = [tuple(int(i) for i in (s == 1).nonzero()[0]) for s in shifted]
    assert all(s.sum() == 1 and abs(r - 4) <= 1 and abs(c - 4) <= 1 for s, (r, c) in zip(shifted, where))
    assert len(set(where)) == 9  # every shift in [-1, 1]^2 occurs among 50 draws
    ones = torch.ones(20, 8, 8)
    holes = (C.cutout(ones, 3, generator=gen(0)) == 0).sum(dim=(1, 2))
    assert holes.max() == 9 and holes.min() >= 4  # a corner hole hangs over two edges
    assert torch.allclose(C.random_rotation(dot, 0.0, generator=gen(0)), dot, atol=1e-6)
    grey = torch.full((200, 8, 8), 0.5)
    noise = C.gaussian_noise(grey, 0.05, generator=gen(0)) - grey
    assert noise.std().item() == pytest.approx(0.05, rel=0.05)
    off = C.augment_digits(dot, generator=gen(0), max_shift=0, max_degrees=0, noise_std=0, cutout_size=0)
    assert torch.equal(off, dot) and off is not dot


TEXT = torch.tensor([
    [2, 10, 11, 12, 13, 14, 15, 3, 0, 0],
    [2, 20, 21, 3, 22, 23, 3, 0, 0, 0],  # a pair: [SEP] in the middle stays
    [2, 30, 3, 0, 0, 0, 0, 0, 0, 0],
])
TEXT_VIEWS = {
    "masking": lambda ids, g: C.random_masking(ids, 0.5, generator=g),
    "deletion": lambda ids, g: C.random_deletion(ids, 0.5, generator=g),
    "crop": lambda ids, g: C.span_crop(ids, 0.3, 0.7, generator=g),
    "synonyms": lambda ids, g: C.synonym_replacement(ids, {11: [40, 41], 20: [42], 14: [43]}, 0.7, generator=g),
}


def specials(row, mask=None) -> list[int]:
    row = row[mask.bool()] if mask is not None else row[row != 0]
    return [int(t) for t in row if t < 7 and t != 4]  # [MASK] (4) is what masking writes


@pytest.mark.parametrize("name", TEXT_VIEWS)
def test_text_views_are_seeded_keep_shapes_and_never_touch_special_tokens(name):
    view = TEXT_VIEWS[name]
    ids = TEXT.repeat(8, 1)  # (24, 10)
    a, b, c = view(ids, gen(0)), view(ids, gen(0)), view(ids, gen(1))
    assert a["input_ids"].shape == ids.shape and a["input_ids"].dtype == torch.long
    assert a["attention_mask"].shape == ids.shape
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["attention_mask"], b["attention_mask"])
    assert not torch.equal(a["input_ids"], c["input_ids"])
    assert not torch.equal(a["input_ids"], ids)
    for before, after, mask in zip(ids, a["input_ids"], a["attention_mask"]):
        assert specials(after, mask) == specials(before)  # same specials, same order
        assert (after[~mask.bool()] == 0).all()  # padding is padding
        assert mask.sum() >= (before != 0).sum() - (before >= 7).sum() + 1  # a content token left
    assert torch.equal(TEXT.repeat(8, 1), ids)  # the input is not modified
    one = view(TEXT[0], gen(0))  # a single (L,) row works too
    assert one["input_ids"].shape == TEXT[0].shape


def test_masking_keeps_positions_and_deletion_and_crop_keep_order():
    ids = TEXT.repeat(30, 1)
    masked = C.random_masking(ids, 0.5, generator=gen(0))["input_ids"]
    changed = masked != ids
    assert (masked[changed] == 4).all() and not changed[ids < 7].any()
    content = (ids >= 7).sum().item()
    assert changed.sum().item() / content == pytest.approx(0.5, abs=0.08)
    for view in (C.random_deletion(ids, 0.5, generator=gen(0)), C.span_crop(ids, 0.3, 0.7, generator=gen(0))):
        for before, after in zip(ids.tolist(), view["input_ids"].tolist()):
            kept = [t for t in after if t >= 7]
            words = [t for t in before if t >= 7]
            it = iter(words)
            assert all(t in it for t in kept)  # a subsequence: order kept
    for before, after in zip(ids.tolist(), C.span_crop(ids, 0.5, 0.5, generator=gen(0))["input_ids"].tolist()):
        kept, words = [t for t in after if t >= 7], [t for t in before if t >= 7]
        assert len(kept) == math.ceil(0.5 * len(words))
        assert any(words[i:i + len(kept)] == kept for i in range(len(words)))  # contiguous


def test_toyworld_synonyms_keep_the_meaning_of_a_story():
    from ssledu.data import tokenize, toyworld

    table = C.toyworld_synonyms()
    assert table == {"sits": ("rests",), "rests": ("sits",), "was": ("looked",), "looked": ("was",)}
    tok = tokenize.train_tokenizer(toyworld.vocabulary(), kind="word")
    id_table = C.synonym_ids(tok, table)
    stories = toyworld.generate_texts(40, seed=3)
    padded = tok(stories, padding=True, return_tensors="pt")
    out = C.synonym_replacement(padded["input_ids"], id_table, 1.0, attention_mask=padded["attention_mask"],
                                generator=gen(0))
    changed = 0
    for i, story in enumerate(stories):
        n = int(padded["attention_mask"][i].sum())
        text = tok.decode(out["input_ids"][i, :n])
        changed += text != story
        assert toyworld.story_attributes(text) == toyworld.story_attributes(story)
        assert math.isfinite(toyworld.true_nll(text))
    assert changed == 40  # every story has a closing verb, so p=1 changes each one


def test_dropout_views_differ_are_seeded_and_restore_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.1), nn.Linear(16, 3)).eval()
    x = torch.randn(5, 4)
    a1, a2 = C.dropout_views(model, x, seed=0)
    b1, b2 = C.dropout_views(model, x, seed=0)
    assert not torch.equal(a1, a2) and torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not model.training
    with pytest.raises(ValueError, match="no active dropout"):
        C.dropout_views(nn.Linear(4, 3), x)


# --- errors -----------------------------------------------------------------------------------


def test_clear_errors():
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="batch size 1.*at least 2"):
        C.nt_xent(z[:1], z[:1])
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        C.nt_xent(z, z, temperature=0)
    with pytest.raises(ValueError, match=r"same shape.*\(4, 8\) and \(3, 8\)"):
        C.info_nce(z, z[:3])
    with pytest.raises(TypeError, match="float embeddings"):
        C.nt_xent(z.long(), z.long())


# --- SimSiam, shuffled BN, retrieval ----------------------------------------------------------


def test_simsiam_loss_equals_a_loop_and_stops_the_gradient():
    g = gen(7)
    z1, z2 = torch.randn(5, 6, generator=g, requires_grad=True), torch.randn(5, 6, generator=g, requires_grad=True)
    p1, p2 = z1 * 2 + 1, z2 - 0.5  # predictions depend on z: a gradient can reach z only through p
    with torch.no_grad():
        loop = -sum(cos(p1[i], z2[i]) + cos(p2[i], z1[i]) for i in range(5)) / 10
    loss = C.simsiam_loss(p1, p2, z1, z2)
    assert loss.item() == pytest.approx(loop, rel=1e-5)
    # with the stop-gradient the targets are constants: d loss / d z flows through p only
    (gz1,) = torch.autograd.grad(loss, z1, retain_graph=True)
    q1 = (z1 * 2 + 1).detach().requires_grad_(True)
    (gp1,) = torch.autograd.grad(C.simsiam_loss(q1, p2, z1, z2), q1)
    assert torch.allclose(gz1, 2 * gp1)  # chain rule through p1 = 2 z1 + 1, nothing via the target
    (gz1_free,) = torch.autograd.grad(C.simsiam_loss(p1, p2, z1, z2, stop_gradient=False), z1)
    assert not torch.allclose(gz1_free, gz1)  # without sg the target term adds its own gradient
    assert C.simsiam_loss(z1, z2, z2, z1).item() == pytest.approx(-1.0)  # p equal to the target


def test_simsiam_predictor_is_a_bottleneck_with_batchnorm():
    h = C.simsiam_predictor(32)
    assert [type(m).__name__ for m in h] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert h[0].out_features == 8 and h(torch.randn(4, 32)).shape == (4, 32)
    with pytest.raises(ValueError, match="positive integer"):
        C.simsiam_predictor(0)


def test_group_batch_norm_matches_batchnorm_per_group_and_keeps_the_order():
    g = gen(3)
    z = torch.randn(8, 5, generator=g) * 3 + 2
    bn = nn.BatchNorm1d(5, affine=False).train()
    whole = C.group_batch_norm(z)
    assert torch.allclose(whole, bn(z), atol=1e-6)
    perm = torch.randperm(8, generator=g)
    out = C.group_batch_norm(z, 2, perm=perm)
    for rows in (perm[:4], perm[4:]):  # each group normalised by its own statistics, rows in place
        assert torch.allclose(out[rows], bn(z[rows]), atol=1e-6)
    assert not torch.allclose(out, C.group_batch_norm(z, 2), atol=1e-3)  # the shuffle changes the groups
    with pytest.raises(ValueError, match="groups must divide"):
        C.group_batch_norm(z, 3)
    with pytest.raises(ValueError, match="permutation"):
        C.group_batch_norm(z, 2, perm=torch.zeros(8, dtype=torch.long))


def test_mean_pool_ignores_padding():
    h = torch.arange(12.0).reshape(1, 4, 3).repeat(2, 1, 1)  # (2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    out = C.mean_pool(h, mask)
    assert torch.equal(out[0], h[0, :2].mean(0)) and torch.equal(out[1], h[1].mean(0))
    with pytest.raises(ValueError, match=r"\(B, L, D\)"):
        C.mean_pool(h[0], mask)


def test_same_label_recall_by_hand():
    # four points on a line of angles; labels a a b b; neighbours by cosine
    angles = torch.tensor([0.0, 0.1, 1.0, 3.0])
    e = torch.stack([angles.cos(), angles.sin()], 1)
    labels = ["a", "a", "b", "b"]
    # nearest neighbours: 0 -> 1 (a, hit), 1 -> 0 (hit), 2 -> 1 (miss), 3 -> 2 (hit)
    r = C.same_label_recall(e, labels, ks=(1, 2))
    assert r["recall@1"] == pytest.approx(3 / 4) and r["precision@1"] == pytest.approx(3 / 4)
    # 2 nearest: 0 -> {1, 2}: 1 hit; 1 -> {0, 2}: 1; 2 -> {1, 0}: 0; 3 -> {2, 1}: 1
    assert r["recall@2"] == pytest.approx(3 / 4) and r["precision@2"] == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="every k"):
        C.same_label_recall(e, labels, ks=(4,))
