"""Downstream heads: each trains a tiny task to a known accuracy in seconds."""

import numpy as np
import pytest
import torch

from ssledu import adapt, models
from ssledu.conventions import IGNORE_INDEX
from ssledu.data import toyworld
from ssledu.data.tokenize import train_tokenizer

WORDS = ["red", "blue", "circle", "square", "big", "small", "jumps", "waits"]
COLOURS = ("red", "blue")


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(toyworld.vocabulary() + ["what colour size where one ?"], kind="word")


@pytest.fixture(scope="module")
def bert(tok):
    torch.manual_seed(0)
    return models.bert(tok, "nano")


def _random_texts(n, seed):
    """Texts of 6 words; label 1 when "red" is among them."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(WORDS[2:], size=6))
        if i % 2:
            words[rng.integers(6)] = "red"
        texts.append(" ".join(words))
        labels.append(i % 2)
    return texts, labels


def test_classification_head_learns_which_texts_hold_a_word(tok, bert):
    texts, labels = _random_texts(400, seed=0)
    ex = adapt.encode_classification(tok, texts, labels)
    model = adapt.EncoderWithHead(bert, "classification", 2)
    assert adapt.accuracy(model, ex[300:]) < 0.75  # an untrained head is near chance
    adapt.train_head(model, ex[:300], epochs=6, lr=3e-3)
    assert adapt.accuracy(model, ex[300:]) >= 0.97


@pytest.mark.parametrize("pooling", ["cls", "last"])
def test_other_poolings_read_the_right_position(tok, bert, pooling):
    model = adapt.EncoderWithHead(bert, "classification", 3, pooling=pooling)
    batch = adapt.collate(adapt.encode_classification(tok, ["red circle", "blue square jumps"], [0, 1]))
    model.eval()
    with torch.no_grad():
        h = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = model(**batch).logits
    at = 0 if pooling == "cls" else batch["attention_mask"].sum(1) - 1  # [SEP], the last real token
    rows = h[torch.arange(2), at] if pooling == "last" else h[:, 0]
    torch.testing.assert_close(logits, model.head(rows))


def test_tagging_head_learns_bio_tags_that_depend_on_context(tok, bert):
    stories = toyworld.generate_texts(300, seed=0)
    ex = adapt.encode_tagging(tok, [s.split() for s in stories], [toyworld.bio_tags(s) for s in stories],
                              tag_names=toyworld.BIO_TAGS)
    assert ex[0]["labels"][0] == IGNORE_INDEX and ex[0]["labels"][-1] == IGNORE_INDEX  # [CLS], [SEP]
    o_share = np.mean([t == "O" for s in stories[250:] for t in toyworld.bio_tags(s)])
    model = adapt.EncoderWithHead(bert, "tagging", len(toyworld.BIO_TAGS))
    adapt.train_head(model, ex[:250], epochs=3, lr=3e-3)
    acc = adapt.accuracy(model, ex[250:])
    assert o_share < 0.8 and acc >= 0.97
    assert len(adapt.predict(model, ex[250:251])[0]) == len(stories[250].split())  # one tag per word


def test_tagging_puts_a_words_tag_on_its_first_piece_only():
    tok = train_tokenizer(["a big red circle"] * 5 + ["reddish"], kind="bpe", vocab_size=275)
    ex = adapt.encode_tagging(tok, [["a", "reddish", "circle"]], [[0, 1, 2]])[0]
    pieces = tok("a reddish circle", add_special_tokens=False)
    wids = pieces.word_ids()
    assert wids.count(1) > 1, "the test needs a word of several pieces"
    expected = [IGNORE_INDEX] + [[0, 1, 2][w] if w not in wids[:t] else IGNORE_INDEX
                                 for t, w in enumerate(wids)] + [IGNORE_INDEX]
    assert ex["labels"] == expected


def test_frozen_head_leaves_the_encoder_alone(tok, bert):
    stories = toyworld.generate_texts(200, seed=1)
    ex = adapt.encode_tagging(tok, [s.split() for s in stories], [toyworld.role_ids(s) for s in stories])
    before = {k: v.clone() for k, v in bert.state_dict().items()}
    model = adapt.EncoderWithHead(bert, "tagging", len(toyworld.ROLE_NAMES), freeze=True)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.train()
    assert not model.encoder.training and model.head.training
    adapt.train_head(model, ex[:160], epochs=4, lr=1e-2)
    assert all(torch.equal(frozen[k], v) for k, v in model.encoder.state_dict().items())
    assert adapt.accuracy(model, ex[160:]) > 0.8  # roles follow the word: readable off random features
    # fine-tuning changes the copy inside the head, never the network passed in
    tuned = adapt.EncoderWithHead(bert, "tagging", len(toyworld.ROLE_NAMES))
    adapt.train_head(tuned, ex[:40], epochs=1)
    assert all(torch.equal(before[k], v) for k, v in bert.state_dict().items())
    assert not all(torch.equal(frozen[k], v) for k, v in tuned.encoder.state_dict().items())


def _colour_qa(n, seed):
    """Contexts of 6 random words with one colour word; the answer is that word."""
    rng = np.random.default_rng(seed)
    qs, cs, spans = [], [], []
    for _ in range(n):
        words = list(rng.choice(WORDS[2:], size=6))
        at = int(rng.integers(6))
        words[at] = COLOURS[rng.integers(2)]
        qs.append("what colour ?")
        cs.append(" ".join(words))
        spans.append((at, at))
    return qs, cs, spans


def test_qa_head_finds_the_answer_span(tok, bert):
    qs, cs, spans = _colour_qa(200, seed=0)
    ex = adapt.encode_qa(tok, qs, cs, spans)
    first = ex[0]
    assert first["input_ids"][first["start_positions"]] == tok.convert_tokens_to_ids(cs[0].split()[spans[0][0]])
    assert first["context_mask"][:5] == [0, 0, 0, 0, 0]  # [CLS] what colour ? [SEP]
    model = adapt.EncoderWithHead(bert, "qa", freeze=True)
    adapt.train_head(model, ex[:160], epochs=5, lr=1e-2)
    assert adapt.accuracy(model, ex[160:]) >= 0.95
    assert adapt.predict(model, ex[160:161])[0] == spans[160]


def test_qa_loss_is_the_mean_of_start_and_end_cross_entropy(tok, bert):
    ex = adapt.encode_qa(tok, *_colour_qa(3, seed=1))
    model = adapt.EncoderWithHead(bert, "qa").eval()
    batch = adapt.collate(ex)
    out = model(**batch)
    ref = (torch.nn.functional.cross_entropy(out.start_logits, batch["start_positions"])
           + torch.nn.functional.cross_entropy(out.end_logits, batch["end_positions"])) / 2
    torch.testing.assert_close(out.loss, ref)
    assert (out.start_logits[batch["context_mask"] == 0] <= -1e4 + 1).all()  # never outside the context


def test_toyworld_qa_encodes_the_answer_word(tok):
    qa = toyworld.generate_qa(20, seed=3)
    ex = adapt.encode_qa(tok, [q["question"] for q in qa], [q["context"] for q in qa],
                         [(q["answer_start"], q["answer_end"]) for q in qa])
    for q, e in zip(qa, ex):
        assert tok.convert_ids_to_tokens(e["input_ids"][e["start_positions"]]) == q["answer"]
        assert e["word_of_token"][e["start_positions"]] == q["answer_start"]


def _brute_force(s, e, mask, max_len):
    best, arg = -np.inf, None
    for i in range(len(s)):
        for j in range(i, min(len(s), i + max_len)):
            if mask[i] and mask[j] and s[i] + e[j] > best:
                best, arg = s[i] + e[j], (i, j)
    return arg


def test_decode_span_never_ends_before_it_starts():
    g = torch.Generator().manual_seed(0)
    s, e = torch.randn(50, 12, generator=g), torch.randn(50, 12, generator=g)
    e[:, 0] += 5.0  # the best end alone lies before every start: a naive argmax would fail
    mask = (torch.rand(50, 12, generator=g) > 0.3).long()
    mask[:, 3] = 1
    starts, ends = adapt.decode_span(s, e, mask, max_answer_len=4)
    assert (ends >= starts).all() and (ends - starts < 4).all()
    for b in range(50):
        assert (int(starts[b]), int(ends[b])) == _brute_force(s[b].numpy(), e[b].numpy(), mask[b].numpy(), 4)
    with pytest.raises(ValueError, match="max_answer_len"):
        adapt.decode_span(s, e, max_answer_len=0)


def test_label_efficiency_rows_and_untouched_template(tok, bert):
    texts, labels = _random_texts(160, seed=2)
    ex = adapt.encode_classification(tok, texts, labels)
    template = adapt.EncoderWithHead(bert, "classification", 2, freeze=True)
    head = template.head.weight.clone()
    table = adapt.label_efficiency(template, ex[:120], ex[120:], sizes=[4, None], seeds=(0, 1),
                                   epochs=4, lr=1e-2)
    assert list(table.columns) == ["method", "n_labels", "accuracy", "std"]
    assert list(table["n_labels"]) == [4, 120] and (table["method"] == "frozen").all()
    assert table["accuracy"][1] > table["accuracy"][0]
    assert torch.equal(template.head.weight, head)


def test_bad_inputs(tok, bert):
    with pytest.raises(ValueError, match="outside its context"):
        adapt.encode_qa(tok, ["what colour ?"], ["red circle"], [(1, 2)])
    with pytest.raises(ValueError, match="single class"):
        adapt.encode_classification(tok, ["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="one tag per word"):
        adapt.encode_tagging(tok, [["red", "circle"]], [[0]])
    with pytest.raises(ValueError, match="task"):
        adapt.EncoderWithHead(bert, "ner", 3)


@pytest.mark.parametrize("family", ["gpt", "electra", "bart"])
def test_heads_sit_on_every_family(tok, family):
    torch.manual_seed(0)
    build = {"gpt": models.gpt, "electra": models.electra, "bart": models.bart}[family]
    net = build(tok, "nano")
    texts, labels = _random_texts(4, seed=3)
    cls = adapt.EncoderWithHead(net, "classification", 2, pooling="last" if family == "gpt" else "mean")
    out = cls(**adapt.collate(adapt.encode_classification(tok, texts, labels, add_cls_sep=family != "gpt")))
    assert out.logits.shape == (4, 2) and torch.isfinite(out.loss)
    out.loss.backward()
    assert cls.head.weight.grad is not None
    qa = adapt.EncoderWithHead(net, "qa")
    out = qa(**adapt.collate(adapt.encode_qa(tok, *_colour_qa(4, seed=3))))
    assert out.start_logits.shape == out.end_logits.shape and torch.isfinite(out.loss)


def test_unknown_question_words_are_refused_by_name():
    """A tokenizer that learnt the stories only reads "what colour" and "what size" as the same [UNK]s."""
    story_tok = train_tokenizer(toyworld.generate_texts(200, seed=0), kind="word")
    with pytest.raises(ValueError, match=r"does not know: \['what', 'size', '\?'\]"):
        adapt.encode_qa(story_tok, ["what size is the star ?"], ["a big red star"], [(1, 1)])


@pytest.mark.parametrize("family", ["bert", "gpt", "bart"])
def test_vocab_size_adds_trainable_rows_and_keeps_the_old_ones(tok, family):
    torch.manual_seed(0)
    net = {"bert": models.bert, "gpt": models.gpt, "bart": models.bart}[family](tok, "nano")
    old = adapt.EncoderWithHead(net, "qa").get_input_embeddings().weight.detach()
    grown = adapt.EncoderWithHead(net, "qa", vocab_size=len(old) + 3, seed=1)
    w = grown.get_input_embeddings().weight
    assert w.shape == (len(old) + 3, old.shape[1]) and grown.config.vocab_size == len(old) + 3
    torch.testing.assert_close(w[:len(old)], old)  # pretrained rows untouched
    assert not torch.allclose(w[-1], w[-2])  # new words differ from each other
    torch.testing.assert_close(w, adapt.EncoderWithHead(net, "qa", vocab_size=len(old) + 3, seed=1)
                               .get_input_embeddings().weight)  # seeded
    ids = torch.tensor([[2, len(old) + 2, len(old), 3, 9, 3]])
    out = grown(input_ids=ids, start_positions=torch.tensor([4]), end_positions=torch.tensor([4]),
                context_mask=torch.tensor([[0, 0, 0, 1, 1, 0]]))  # two places: a loss with a gradient
    out.loss.backward()
    assert w.grad[len(old) + 2].abs().sum() > 0  # the new word's row learns
    assert net.get_input_embeddings().weight.shape[0] == len(old)  # the caller's network is unchanged
    with pytest.raises(ValueError, match="vocab_size"):
        adapt.EncoderWithHead(net, "qa", vocab_size=len(old) - 1)


def test_added_rows_keep_a_scaled_embedding(tok):
    """BART with scale_embedding multiplies embeddings by sqrt(d_model): growing the table keeps that."""
    torch.manual_seed(0)
    net = models.bart(tok, "nano", scale_embedding=True)
    head = adapt.EncoderWithHead(net, "qa")
    grown = adapt.EncoderWithHead(net, "qa", vocab_size=len(tok) + 2)
    ids = torch.tensor([[2, 5, 7]])
    torch.testing.assert_close(grown.get_input_embeddings()(ids), head.get_input_embeddings()(ids))
