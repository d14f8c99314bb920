"""Chapter 05 helpers: the PCA limit of a linear autoencoder, vector corruptions, exact match."""

import numpy as np
import pytest
import torch

from ssledu.objectives import denoise


def _data(n=300, d=10, seed=0):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, d)) @ g.normal(size=(d, d)) + 3.0  # correlated, off-centre


@pytest.mark.parametrize("k", [0, 1, 4, 10])
def test_pca_limit_equals_sklearn_pca(k):
    from sklearn.decomposition import PCA

    x = _data()
    if k == 0:
        want = float(((x - x.mean(0)) ** 2).mean())  # nothing kept: the mean is the best guess
    else:
        p = PCA(k).fit(x)
        want = float(((p.inverse_transform(p.transform(x)) - x) ** 2).mean())
    assert denoise.pca_reconstruction_error(x, k) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert denoise.pca_reconstruction_error(x, k, x) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_pca_limit_on_held_out_data_uses_the_training_directions():
    from sklearn.decomposition import PCA

    x, xe = _data(seed=0), _data(n=50, seed=1)
    p = PCA(3).fit(x)
    want = float(((p.inverse_transform(p.transform(xe)) - xe) ** 2).mean())
    assert denoise.pca_reconstruction_error(x, 3, xe) == pytest.approx(want, rel=1e-9)


def test_a_trained_linear_autoencoder_reaches_the_limit_and_not_below():
    torch.manual_seed(0)
    x = torch.tensor(_data(n=200, d=8), dtype=torch.float32)
    limit = denoise.pca_reconstruction_error(x, 2)
    ae = torch.nn.Sequential(torch.nn.Linear(8, 2), torch.nn.Linear(2, 8))
    opt = torch.optim.Adam(ae.parameters(), lr=3e-2)
    for _ in range(1500):
        loss = ((ae(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    err = float(((ae(x) - x) ** 2).mean().detach())
    assert limit * (1 - 1e-4) <= err <= limit * 1.01


def test_pca_limit_bad_inputs():
    with pytest.raises(ValueError, match=r"k must be .* \[0, 10\]"):
        denoise.pca_reconstruction_error(_data(), 11)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        denoise.pca_reconstruction_error(np.zeros(5), 1)
    with pytest.raises(ValueError, match=r"x_eval must be \(M, 10\)"):
        denoise.pca_reconstruction_error(_data(), 2, np.zeros((3, 4)))


def test_masking_noise_share_and_gaussian_sigma():
    x = torch.ones(200, 100)
    g = torch.Generator().manual_seed(0)
    masked = denoise.corrupt_vectors(x, "mask", 0.25, generator=g)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert float((masked == 0).float().mean()) == pytest.approx(0.25, abs=0.01)  # 20,000 draws
    noisy = denoise.corrupt_vectors(x, "gaussian", 0.5, generator=torch.Generator().manual_seed(0))
    assert float((noisy - x).std()) == pytest.approx(0.5, abs=0.01)
    assert float((noisy - x).mean()) == pytest.approx(0.0, abs=0.01)
    assert torch.equal(x, torch.ones(200, 100))  # the input is untouched
    again = denoise.corrupt_vectors(x, "mask", 0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, masked)  # seeded


def test_corrupt_vectors_bad_inputs():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="'mask' or 'gaussian'"):
        denoise.corrupt_vectors(x, "salt")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        denoise.corrupt_vectors(x, "mask", 1.0)
    with pytest.raises(ValueError, match="sigma"):
        denoise.corrupt_vectors(x, "gaussian", -0.1)


def test_exact_match_drops_start_and_padding_and_bites():
    labels = torch.tensor([[5, 7, 8, 6], [5, 9, 6, -100], [5, 9, 6, -100], [5, 7, 8, 6], [5, 9, 6, -100]])
    generated = torch.tensor([
        [6, 5, 7, 8, 6, 0],   # equal after the start token
        [6, 5, 9, 6, 0, 0],   # equal, padded
        [6, 5, 9, 9, 6, 0],   # one token too many, inside
        [6, 5, 7, 9, 6, 0],   # one token wrong
        [6, 5, 9, 6, 7, 0],   # the target, then more tokens
    ])
    got = denoise.exact_match(generated, labels, pad_token_id=0, decoder_start_token_id=6)
    assert got.tolist() == [True, True, False, False, False]
    # without dropping the decoder start nothing matches
    assert not denoise.exact_match(generated, labels, pad_token_id=0).any()
    with pytest.raises(ValueError, match="same B"):
        denoise.exact_match(generated[:2], labels, pad_token_id=0)


# --------------------------------------------------------------------------- ELECTRA, CPU budgets, the noise explorer


@pytest.fixture(scope="module")
def tok():
    from ssledu.data import toyworld, tokenize

    return tokenize.train_tokenizer(toyworld.generate_texts(100, seed=0), kind="word")


@pytest.fixture(scope="module")
def ids(tok):
    from ssledu.data import blocks, toyworld

    return blocks.encode_texts(tok, toyworld.generate_texts(64, seed=1), add_bos=True, add_eos=True)


def _electra(tok, seed=0):
    from ssledu import models

    torch.manual_seed(seed)
    g = models.electra(tok, "nano", head="generator", dropout=0.0, d_model=32, n_head=1, d_ff=64)
    d = models.electra(tok, "nano", dropout=0.0)
    return denoise.ELECTRA(g, d, seed=3)


def test_electra_module_loss_equals_the_pieces_by_hand(tok, ids):
    from ssledu.objectives import mlm

    torch.set_num_threads(1)
    pair = _electra(tok)
    batch = mlm.MLMCollator(tok, seed=0, model=pair)(ids[:8])
    out = pair(**batch)
    # by hand, with a sampler seeded as the module's
    g_logits = pair.generator(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rtd = denoise.rtd_inputs(batch["input_ids"], batch["labels"], logits=g_logits,
                             generator=torch.Generator().manual_seed(3), attention_mask=batch["attention_mask"])
    d_logits = pair.discriminator(input_ids=rtd["input_ids"], attention_mask=batch["attention_mask"]).logits
    want, parts = denoise.electra_loss(g_logits, batch["labels"], d_logits, rtd["labels"])
    assert torch.allclose(out.loss, want, atol=1e-5)
    assert torch.allclose(out.discriminator_loss, parts["discriminator_loss"], atol=1e-6)
    real = rtd["labels"] != -100
    assert float(out.replaced) == pytest.approx(float(rtd["labels"][real].float().mean()))
    assert 0 < float(out.replaced) < 0.3  # about 15 % masked, most replaced by an untrained generator
    loss, metrics = denoise.ELECTRA.fit_loss(pair, batch)
    assert set(metrics) == {"generator_loss", "discriminator_loss", "replaced"}
    loss.backward()  # both networks learn from the one loss
    assert pair.generator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert pair.discriminator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert pair.config is pair.discriminator.config


def test_electra_trains_under_fit_and_logs_both_losses(tok, ids):
    from ssledu.objectives import mlm
    from ssledu.train import fit

    torch.set_num_threads(1)
    pair = _electra(tok)
    history = fit(pair, ids, collate_fn=mlm.MLMCollator(tok, seed=0, model=pair), loss_fn=denoise.ELECTRA.fit_loss,
                  batch_size=16, lr=3e-3, max_steps=30, progress=False, live_plot=False, device="cpu")
    first, last = history.steps[0], history.steps[-1]
    assert {"generator_loss", "discriminator_loss"} <= set(last)
    assert last["generator_loss"] < first["generator_loss"] - 0.5  # the generator learns toyworld's words
    assert last["discriminator_loss"] < first["discriminator_loss"]
    assert last["loss"] < first["loss"]


def test_electra_bad_inputs(tok):
    from ssledu import models

    g = models.electra(tok, "nano", head="generator", dropout=0.0, d_model=32, n_head=1)
    with pytest.raises(ValueError, match="share the vocabulary"):
        denoise.ELECTRA(g, models.electra(len(tok) + 5, "nano"))
    with pytest.raises(TypeError, match="transformers model"):
        denoise.ELECTRA(g, "discriminator")
    with pytest.raises(ValueError, match="labels"):
        denoise.ELECTRA(g, models.electra(tok, "nano"))(input_ids=torch.tensor([[5, 9, 6]]))


def test_steps_in_cpu_budget_scales_and_leaves_the_model_alone(tok, ids):
    from ssledu import models
    from ssledu.objectives import mlm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = models.electra(tok, "nano", head="generator", dropout=0.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    coll = mlm.MLMCollator(tok, seed=0, model=net)
    state = coll.state_dict()["generator"].clone() if "generator" in coll.state_dict() else None
    steps, per_step = denoise.steps_in_cpu_budget(net, coll, ids, 100.0, batch_size=8)
    assert per_step > 0 and steps == int(100.0 / per_step)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # timed on a copy
    if state is not None:
        assert torch.equal(coll.state_dict()["generator"], state)  # the collator's noise is untouched
    twice, _ = denoise.steps_in_cpu_budget(net, coll, ids, 200.0, batch_size=8)
    assert 1.3 * steps < twice < 3 * steps  # twice the budget, about twice the steps
    with pytest.raises(ValueError, match="cpu_seconds"):
        denoise.steps_in_cpu_budget(net, coll, ids, 0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        denoise.steps_in_cpu_budget(net, coll, ids[:3], 1.0, batch_size=8)


class _Echo(torch.nn.Module):
    """A stand-in BART whose greedy output is a fixed sequence (for the explorer's diff)."""

    def __init__(self, out, start, pad=0):
        super().__init__()
        self.out, self.pad = out, pad
        self.config = type("C", (), {"decoder_start_token_id": start, "max_position_embeddings": 128})()

    def generate(self, input_ids, **_):
        return torch.tensor([[self.config.decoder_start_token_id, *self.out, self.pad, self.pad]])


def test_noise_reconstruction_marks_what_differs(tok):
    from ssledu import widgets

    text = "a big red circle sits on the left ."
    ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    exact = widgets.noise_reconstruction(_Echo(ids, tok.eos_token_id, tok.pad_token_id), tok, text, "infill", 0.3, seed=0).data
    assert "exact reconstruction" in exact and "#f4b6b6" not in exact  # nothing red
    assert "[MASK]" in exact  # the corrupted input is shown
    wrong = list(ids)
    wrong[3] = tok.convert_tokens_to_ids("blue")
    shown = widgets.noise_reconstruction(_Echo(wrong, tok.eos_token_id, tok.pad_token_id), tok, text, "mask", 0.3, seed=0).data
    assert "not exact: 1 token(s) differ" in shown and shown.count("#f4b6b6") == 1
    with pytest.raises(ValueError, match="at least two words"):
        widgets.noise_reconstruction(_Echo(ids, tok.eos_token_id, tok.pad_token_id), tok, "circle", "mask")


def test_noise_explorer_headless_is_one_call_per_noise_network(tok):
    from ssledu import widgets

    text = "a big red circle sits on the left ."
    ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    nets = {"infill": _Echo(ids, tok.eos_token_id, tok.pad_token_id), "delete": _Echo(ids[:3], tok.eos_token_id, tok.pad_token_id)}
    ex = widgets.noise_explorer(nets, tok, text, show=False)
    assert ex.calls == 1 and "infill, rate 0.15, seed 0" in ex.result.data  # the first noise, defaults
    assert "exact reconstruction" in ex.result.data
    with pytest.raises(ValueError, match="no network for noise"):
        widgets.noise_explorer(nets, tok, text, noises=("mask",), show=False)
