"""Model builders: sizes, special ids, attention maps, overrides and errors."""

import math

import pytest
import torch

from ssledu import models

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]"]


pytestmark = pytest.mark.usefixtures("one_thread")


def char_tokenizer(text="abcdefghijklmnopqrstuvwxyz .,"):
    """A fast word-level tokenizer over characters with the course's fixed special ids."""
    from tokenizers import Tokenizer, models as tm, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(set(text)):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(tm.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    names = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                 mask_token="[MASK]", bos_token="[BOS]", eos_token="[EOS]")
    return PreTrainedTokenizerFast(tokenizer_object=tok, **names)


def gpt2_param_count(V, P, d, L, ff):
    """GPT-2 parameters from its architecture (tied LM head): embeddings, L blocks, final LN."""
    block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * ff + ff) + (ff * d + d)
    return V * d + P * d + L * block + 2 * d


@pytest.mark.parametrize("preset", ["nano", "tiny", "small"])
def test_gpt_presets_have_the_architecture_sizes(preset):
    size = models.PRESETS[preset]
    model = models.gpt(100, preset)
    assert len(model.transformer.h) == size["n_layer"]
    assert model.config.n_head == size["n_head"] and model.config.n_embd == size["d_model"]
    assert model.transformer.h[0].mlp.c_fc.nf == size["d_ff"]
    assert model.config.n_positions == size["max_len"]
    expected = gpt2_param_count(100, size["max_len"], size["d_model"], size["n_layer"], size["d_ff"])
    assert models.count_parameters(model) == expected


def test_bert_and_bart_sizes():
    bert = models.bert(100, "tiny")
    assert len(bert.bert.encoder.layer) == 4
    assert bert.config.hidden_size == 128 and bert.config.intermediate_size == 512
    assert bert.config.max_position_embeddings == 256
    bart = models.bart(100, "nano")
    assert len(bart.model.encoder.layers) == 2 and len(bart.model.decoder.layers) == 2
    assert bart.config.d_model == 64 and bart.config.encoder_ffn_dim == 256
    # the output layer is tied to the embeddings: counted once
    emb = bert.bert.embeddings.word_embeddings.weight
    assert bert.cls.predictions.decoder.weight is emb
    assert models.count_parameters(bert) == sum(p.numel() for p in set(bert.parameters()))


@pytest.mark.parametrize(
    "build, cls",
    [
        (lambda t: models.bert(t, head="mlm"), "BertForMaskedLM"),
        (lambda t: models.bert(t, head="pretraining"), "BertForPreTraining"),
        (lambda t: models.gpt(t), "GPT2LMHeadModel"),
        (lambda t: models.bart(t), "BartForConditionalGeneration"),
    ],
)
def test_random_init_loss_is_ln_vocab_and_backward_works(build, cls):
    tok = char_tokenizer()
    V = len(tok)
    torch.manual_seed(0)
    model = build(tok).eval()
    assert type(model).__name__ == cls and model.config.vocab_size == V
    x = torch.randint(7, V, (4, 16))
    kwargs = {"input_ids": x, "labels": x}
    if cls == "BertForPreTraining":
        kwargs["next_sentence_label"] = torch.tensor([0, 1, 0, 1])
    loss = model(**kwargs).loss
    # small-std init -> near-uniform predictions: the loss starts at ln V (+ ln 2 for NSP)
    expected = math.log(V) + (math.log(2) if cls == "BertForPreTraining" else 0.0)
    assert abs(loss.item() - expected) < 0.1
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bert_encoder_and_classifier_heads():
    enc = models.bert(60, head=None)
    assert type(enc).__name__ == "BertModel"
    out = enc(input_ids=torch.randint(7, 60, (2, 5)))
    assert out.last_hidden_state.shape == (2, 5, 64)
    clf = models.bert(60, head="classification", num_labels=3)
    logits = clf(input_ids=torch.randint(7, 60, (2, 5))).logits
    assert logits.shape == (2, 3)


def test_special_ids_come_from_the_tokenizer():
    tok = char_tokenizer()
    g = models.gpt(tok)
    assert (g.config.bos_token_id, g.config.eos_token_id, g.config.pad_token_id) == (5, 6, 0)
    assert g.generation_config.eos_token_id == 6
    b = models.bart(tok)
    assert b.config.pad_token_id == 0 and b.config.eos_token_id == 6
    assert b.config.decoder_start_token_id == 6 and b.config.bos_token_id == 5
    assert models.bert(tok).config.pad_token_id == 0
    # an integer vocabulary uses the same fixed layout
    assert models.gpt(20).config.eos_token_id == 6
    # generation stays inside the tiny vocabulary and runs offline
    out = g.eval().generate(torch.tensor([[5, 8, 9]]), max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= 8 and int(out.max()) < len(tok)


def test_eager_attention_rows_sum_to_one_in_eval_mode():
    torch.manual_seed(0)
    x = torch.randint(7, 50, (2, 9))
    for model in (models.bert(50, attn="eager"), models.gpt(50, attn="eager")):
        model.eval()
        att = model(input_ids=x, output_attentions=True).attentions
        assert len(att) == 2 and att[0].shape == (2, 2, 9, 9)
        torch.testing.assert_close(att[0].sum(-1), torch.ones(2, 2, 9))
    # GPT-2 is causal: nothing attends to the future
    assert att[1][0, 0].triu(1).abs().max() == 0
    assert models.bert(50).config._attn_implementation == "sdpa"


def test_overrides_map_onto_each_config():
    m = models.bert(50, n_layer=3, d_model=96, n_head=3, d_ff=100, max_len=64, dropout=0.0)
    c = m.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (3, 96, 3)
    assert (c.intermediate_size, c.max_position_embeddings) == (100, 64)
    assert c.hidden_dropout_prob == 0.0 and c.attention_probs_dropout_prob == 0.0
    assert models.gpt(50, d_ff=100).transformer.h[0].mlp.c_fc.nf == 100
    g = models.gpt(50, dropout=0.2, n_layer=1).config
    assert (g.resid_pdrop, g.embd_pdrop, g.attn_pdrop, g.n_layer) == (0.2, 0.2, 0.2, 1)
    b = models.bart(50, n_layer=1, dropout=0.0).config
    assert (b.encoder_layers, b.decoder_layers, b.dropout, b.attention_dropout) == (1, 1, 0.0, 0.0)
    # native config fields pass through
    assert models.bert(50, type_vocab_size=3).config.type_vocab_size == 3
    assert models.describe(m).startswith("BertForMaskedLM nano*: 3 layers x 3 heads, d=96, ")


def test_describe_and_count_parameters():
    m = models.bert(100, "nano")
    n = models.count_parameters(m)
    expected = f"BertForMaskedLM nano: 2 layers x 2 heads, d=64, {n / 1e6:.2f}M params, sdpa"
    assert models.describe(m) == expected
    assert "2+2 layers" in models.describe(models.bart(100, attn="eager"))
    m.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    assert models.count_parameters(m) == n - 100 * 64
    assert models.count_parameters(m, trainable_only=False) == n


def test_preset_survives_save_and_load(tmp_path):
    from transformers import GPT2LMHeadModel

    m = models.gpt(30, "nano", attn="eager")
    m.save_pretrained(tmp_path)
    loaded = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert models.describe(loaded).startswith("GPT2LMHeadModel nano:")


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: models.bert(50, "huge"), ["'huge'", "nano, tiny, small"]),
        (lambda: models.gpt(50, n_layers=3), ["'n_layers'", "n_layer"]),
        (lambda: models.gpt(50, d_model=100, n_head=3), ["not divisible", "d_model=102"]),
        (lambda: models.bert(50, attn="flash"), ["'eager'"]),
        (lambda: models.bert(50, head="nsp"), ["'pretraining'"]),
        (lambda: models.gpt(50, dropout=1.5), ["dropout"]),
        (lambda: models.gpt(50, n_layer=0), ["n_layer"]),
    ],
)
def test_bad_input_says_what_to_do(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for w in words:
        assert w in str(err.value)


def test_gpt_uses_gpt2s_gelu_as_one_fused_kernel():
    fused = models.gpt(40).eval()
    assert fused.config.activation_function == "gelu_pytorch_tanh"
    reference = models.gpt(40, activation_function="gelu_new").eval()  # transformers' default
    reference.load_state_dict(fused.state_dict())
    x = torch.randint(7, 40, (2, 12))
    torch.testing.assert_close(fused(input_ids=x).logits, reference(input_ids=x).logits,
                               atol=1e-5, rtol=1e-5)
