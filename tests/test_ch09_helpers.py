"""Chapter 09: the measurements it builds on mean what the chapter says they mean."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ssledu import efficient, models, scaling
from ssledu.data import toyworld, train_tokenizer
from ssledu.data.blocks import encode_texts
from ssledu.objectives import clm

SOLUTIONS = Path(__file__).resolve().parents[1] / "chapters" / "solutions" / "ch09.py"


@pytest.fixture(scope="module")
def sol():
    spec = importlib.util.spec_from_file_location("course_solutions_ch09_helpers", SOLUTIONS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_chapters_validation_loss_is_the_floors_per_token_mean(one_thread):
    """Section 7 compares a mean over a padded batch with bayes_floor: same tokens, same mean."""
    texts = toyworld.generate_texts(12, seed=3)
    tok = train_tokenizer(toyworld.generate_texts(200, seed=0) + texts, kind="word")
    batch = clm.causal_lm_batch(encode_texts(tok, texts, add_bos=True, add_eos=True), pad_id=tok.pad_token_id)
    predicted = int(batch["attention_mask"][:, 1:].sum())
    assert predicted == sum(len(t.split()) + 1 for t in texts)  # every word and [EOS], as bayes_floor
    torch.manual_seed(0)
    model = models.gpt(tok, "nano", max_len=64, dropout=0.0).eval()
    with torch.no_grad():
        nll = clm.per_position_nll(model, batch["input_ids"], batch["attention_mask"])
    ours = float(nll.sum()) / predicted
    reference = clm.compare_to_floor(model, tok, texts)
    assert ours == pytest.approx(reference["model_nll"], rel=1e-5)
    assert reference["floor_nll"] == pytest.approx(toyworld.bayes_floor(texts), rel=1e-9)


def test_padding_waste_solution_counts_the_pad_tokens_of_real_batches(sol):
    rng = np.random.default_rng(0)
    seqs = [list(range(1, int(n) + 1)) for n in rng.integers(1, 30, 50)]
    lengths = [len(s) for s in seqs]
    batches = efficient.fixed_batches(lengths, 7, seed=1)  # the last batch is smaller
    padded = list(efficient.collate_indices(seqs, batches, pad_id=0))
    pads = sum(int((b["attention_mask"] == 0).sum()) for b in padded)
    total = sum(b["attention_mask"].numel() for b in padded)
    assert sol.padding_waste(lengths, batches) == pytest.approx(pads / total, rel=1e-12)
    assert sol.padding_waste_wrong(lengths, batches) != pytest.approx(pads / total, rel=1e-6)


def test_compute_optimal_split_is_the_minimum_on_the_budget_line(sol):
    params = {"E": 0.6, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
    for C in (1e15, 1e19):
        n, d = sol.compute_optimal_split(params, C)
        assert 6 * n * d == pytest.approx(C, rel=1e-9)
        grid = np.logspace(math.log10(n) - 2, math.log10(n) + 2, 4001)
        losses = scaling.predict(params, grid, C / (6 * grid))
        assert grid[np.argmin(losses)] == pytest.approx(n, rel=5e-3)
        assert scaling.predict(params, n, d) <= losses.min() + 1e-12
        n_wrong, d_wrong = sol.compute_optimal_split_wrong(params, C)
        assert scaling.predict(params, n_wrong, d_wrong) > scaling.predict(params, n, d) + 1e-6


def test_checkpointing_a_deeper_gpt_keeps_a_smaller_share_of_its_activations(one_thread):
    """Section 3's claim on a small scale: memory shrinks, more so with depth; gradients stay."""
    x = torch.randint(7, 40, (4, 32), generator=torch.Generator().manual_seed(0))
    ratios = []
    for depth in (2, 6):
        torch.manual_seed(0)
        model = models.gpt(40, "nano", n_layer=depth, max_len=32, dropout=0.0).train()
        plain = efficient.saved_activation_bytes(lambda: model(input_ids=x, labels=x).loss)
        model.zero_grad()
        model(input_ids=x, labels=x).loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        with efficient.checkpoint_blocks(model, "ours"):
            ckpt = efficient.saved_activation_bytes(lambda: model(input_ids=x, labels=x).loss)
            model.zero_grad()
            model(input_ids=x, labels=x).loss.backward()
        assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(model.parameters(), grads))
        ratios.append(ckpt / plain)
    assert ratios[1] < ratios[0] < 1
