"""Attention statistics and gradient x input saliency, checked against known answers and captum."""

import numpy as np
import pytest
import torch

from ssledu import adapt, interpret, models
from ssledu.data import toyworld
from ssledu.data.tokenize import train_tokenizer

TEXTS = ["a big red circle sits on the left .", "the star jumps ."]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(toyworld.vocabulary() + ["what colour ?"], kind="word")


@pytest.fixture(scope="module")
def batch(tok):
    ex = adapt.encode_classification(tok, TEXTS, [0, 1])
    return adapt.collate(ex)


def test_statistics_of_known_attention_patterns():
    L = 5
    eye = torch.eye(L)
    prev = torch.diag(torch.ones(L - 1), -1)
    prev[0, 0] = 1.0  # the first token has no previous one: it attends to itself
    first = torch.zeros(L, L)
    first[:, 0] = 1.0
    uniform = torch.full((L, L), 1.0 / L)
    maps = torch.stack([eye, prev, first, uniform]).reshape(1, 1, 4, L, L)  # 1 layer, 4 heads
    special = torch.zeros(1, L)
    special[0, 0] = 1
    t = interpret.attention_statistics(maps, special_mask=special)
    assert list(t["layer"]) == [1] * 4 and list(t["head"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(t["self"], [1.0, 1 / L, 1 / L, 1 / L], atol=1e-6)
    np.testing.assert_allclose(t["previous"], [0.0, 1.0, 1 / (L - 1), 1 / L], atol=1e-6)
    np.testing.assert_allclose(t["special"], [1 / L, 2 / L, 1.0, 1 / L], atol=1e-6)  # prev: queries 0 and 1
    i = np.arange(L)
    np.testing.assert_allclose(t["mean_distance"], [0.0, (L - 1) / L, i.mean(),
                                                    np.abs(i[:, None] - i[None]).mean()], atol=1e-6)


def test_padding_queries_do_not_count():
    L = 4
    maps = torch.eye(L).repeat(1, 2, 1, 1, 1)  # (1 layer, B=2, H=1, L, L)
    maps[0, 1, 0, 2:] = torch.full((2, L), 0.25)  # padded rows of text 2: anything
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    t = interpret.attention_statistics(tuple(maps), mask)  # a tuple, as output_attentions gives
    assert float(t["self"][0]) == pytest.approx(1.0)
    assert float(t["mean_distance"][0]) == pytest.approx(0.0)


def test_attention_maps_need_eager_and_eval(tok, batch):
    torch.manual_seed(0)
    model = models.bert(tok, "nano", attn="eager")
    model.train()
    maps = interpret.attention_maps(model, batch["input_ids"], batch["attention_mask"])
    assert model.training, "train/eval mode is restored"
    n, B, H, L, _ = maps.shape
    assert (n, B, H) == (2, 2, 2) and L == batch["input_ids"].shape[1]
    # eval mode: every query's weights sum to 1 (dropout would make it about 1.1) and skip padding
    torch.testing.assert_close(maps.sum(-1), torch.ones(n, B, H, L))
    pad = batch["attention_mask"] == 0
    assert pad[1].any() and not pad[0].any()  # text 2 is padded
    assert (maps[:, 1, :, :, pad[1]] < 1e-6).all()
    with pytest.raises(ValueError, match="'eager'.*'sdpa'"):
        interpret.attention_maps(models.bert(tok, "nano"), batch["input_ids"])
    head = adapt.EncoderWithHead(model, "classification", 2)
    torch.testing.assert_close(interpret.attention_maps(head, batch["input_ids"], batch["attention_mask"]), maps)


def test_gpt_attention_is_causal(tok, batch):
    torch.manual_seed(0)
    gpt = models.gpt(tok, "nano", attn="eager")
    maps = interpret.attention_maps(gpt, batch["input_ids"][:1])
    L = maps.shape[-1]
    assert (maps[..., torch.triu(torch.ones(L, L, dtype=torch.bool), 1)] == 0).all()
    t = interpret.attention_statistics(maps)
    assert len(t) == 4 and (t["self"] > 1 / L).all()  # causal rows are short: token 0 only sees itself


def _captum_gxi(model, batch, target):
    from captum.attr import InputXGradient

    def forward(embeds, mask):
        return model(inputs_embeds=embeds, attention_mask=mask).logits

    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    return InputXGradient(forward).attribute(embeds, target=target, additional_forward_args=(batch["attention_mask"],))


def test_gradient_x_input_equals_captum(tok, batch):
    torch.manual_seed(0)
    model = adapt.EncoderWithHead(models.bert(tok, "nano"), "classification", 2).eval()
    ours = interpret.grad_x_input(model, batch)  # target: the batch's labels
    ref = _captum_gxi(model, batch, batch["labels"])
    assert ours.shape == ref.shape == (2, batch["input_ids"].shape[1], 64)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-7)
    assert ours.abs().sum() > 0
    # a transformers classification model, with another target
    hf = models.bert(tok, "nano", head="classification").eval()
    torch.testing.assert_close(interpret.grad_x_input(hf, batch, torch.tensor([1, 0])),
                               _captum_gxi(hf, batch, torch.tensor([1, 0])).detach(), rtol=1e-5, atol=1e-7)


def test_saliency_reductions_and_training_mode(tok, batch):
    torch.manual_seed(0)
    model = adapt.EncoderWithHead(models.bert(tok, "nano"), "classification", 2)
    model.train()
    gx = interpret.grad_x_input(model, batch)
    assert model.training
    torch.testing.assert_close(gx, interpret.grad_x_input(model, batch))  # eval mode: no dropout noise
    torch.testing.assert_close(interpret.token_saliency(model, batch, reduce="sum"), gx.sum(-1))
    torch.testing.assert_close(interpret.token_saliency(model, batch), gx.sum(-1).abs())
    torch.testing.assert_close(interpret.token_saliency(model, batch, reduce="l2"), gx.norm(dim=-1))
    with pytest.raises(ValueError, match="reduce"):
        interpret.token_saliency(model, batch, reduce="max")


def test_evidence_rank():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2], [3.0, 1.0, 2.0, 2.0]])
    assert interpret.evidence_rank(scores, [1, 2]).tolist() == [1, 2]  # a tie counts for the evidence
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 1]])
    assert interpret.evidence_rank(scores, [2, 3], mask).tolist() == [1, 1]
    with pytest.raises(ValueError, match="masked"):
        interpret.evidence_rank(scores, [1, 0], mask)


def test_qa_saliency_points_at_the_word_a_frozen_head_reads(tok):
    """A frozen head on random features answers from the answer token itself: its saliency
    must rank that word first (the answer key), and rank it last when it is excluded."""
    rng = np.random.default_rng(0)
    words = ["circle", "square", "big", "small", "jumps", "waits"]
    qs, cs, spans = [], [], []
    for _ in range(200):
        ctx = list(rng.choice(words, size=6))
        at = int(rng.integers(6))
        ctx[at] = ["red", "blue"][int(rng.integers(2))]
        qs.append("what colour ?")
        cs.append(" ".join(ctx))
        spans.append((at, at))
    ex = adapt.encode_qa(tok, qs, cs, spans)
    torch.manual_seed(0)
    model = adapt.EncoderWithHead(models.bert(tok, "nano"), "qa", freeze=True)
    adapt.train_head(model, ex[:160], epochs=5, lr=1e-2)
    answers = [s for s, _ in spans[160:]]
    ranks = interpret.qa_evidence_ranks(model, ex[160:], answers, exclude_answer=False)
    assert ranks.shape == (40,) and (ranks == 1).mean() >= 0.9
    # the same ranks by hand for one example
    sal = interpret.token_saliency(model, adapt.collate(ex[160:161]))[0]
    w = np.array(ex[160]["word_of_token"])
    per_word = [float(sal[torch.from_numpy(w == k)].sum()) for k in range(6)]
    assert ranks[0] == 1 + sum(v > per_word[answers[0]] for v in per_word)
    with pytest.raises(ValueError, match="outside the context"):
        interpret.qa_evidence_ranks(model, ex[160:161], [9])
    other = [(a + 1) % 6 for a in answers]
    ranks = interpret.qa_evidence_ranks(model, ex[160:], other)
    assert ranks.max() <= 5  # the answer word does not compete
