"""Chapter 08's battery: the tasks line up with toyworld's answer key, frames are dropped exactly,
intrinsic scores come from the right head, and one call evaluates a network on everything."""

import math

import numpy as np
import pytest
import torch

from ssledu import battery, models, probe
from ssledu.data import toyworld, train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(toyworld.generate_texts(300, seed=3), kind="word")


@pytest.fixture(scope="module")
def tasks():
    return battery.toyworld_tasks(n_train=8, n_test=6, n_qa=12, n_qa_test=6, seed=0)


def _bert(tok, head="mlm"):
    torch.manual_seed(0)
    return models.bert(tok, "nano", head=head).eval()


def test_tasks_line_up_with_the_answer_key(tasks):
    texts = tasks["train"] + tasks["test"]
    n_words = sum(len(t.split()) for t in texts)
    for key in ("words", "role", "main_colour", "role_control", "main_colour_control"):
        assert len(tasks[key]) == n_words, key
    assert tasks["n_train_words"] == sum(len(t.split()) for t in tasks["train"])
    start = 0
    for i, t in enumerate(texts):  # the first object's colour, on every word of its story
        n = len(t.split())
        assert set(tasks["main_colour"][start:start + n]) == {toyworld.sentence_targets(t)["colour"]}
        assert list(tasks["role"][start:start + n]) == toyworld.role_ids(t)
        start += n
    # control labels are a function of the word type (Hewitt & Liang)
    by_type = {}
    for w, c in zip(tasks["words"], tasks["main_colour_control"]):
        assert by_type.setdefault(w, c) == c
    assert 0 < tasks["cloze_ceiling"] <= 1
    assert tasks["lm_floor"] == pytest.approx(toyworld.bayes_floor(tasks["test"]))
    assert len(tasks["qa"]) == 12 and len(tasks["qa_test"]) == 6


def test_tasks_reject_tiny_sizes():
    with pytest.raises(ValueError, match="n_train"):
        battery.toyworld_tasks(n_train=1)


def test_framed_word_features_equal_the_probe_wrapping(tok, tasks, one_thread):
    """[CLS] story [SEP] written as text, frame dropped, must give the rows of add_cls_sep=True."""
    model = _bert(tok)
    texts = tasks["test"]
    framed = battery.word_features(model, tok, texts, ("[CLS]", "[SEP]"))
    direct = probe.layer_features(model, tok, texts, level="word", add_cls_sep=True)
    assert framed.shape == direct.shape == (3, sum(len(t.split()) for t in texts), framed.shape[-1])
    np.testing.assert_allclose(framed, direct, atol=1e-5)
    sent = battery.sentence_features(model, tok, texts, ("[BOS]", "[EOS]"))
    assert sent.shape[:2] == (3, len(texts))


def test_a_frame_outside_the_vocabulary_is_refused(tok, tasks):
    with pytest.raises(ValueError, match="no token"):
        battery.word_features(_bert(tok), tok, tasks["test"], ("[START]", "[SEP]"))
    with pytest.raises(ValueError, match="pair of special tokens"):
        battery.frame_texts(["a b"], ("[CLS]",))


def test_intrinsic_reads_the_head_the_network_has(tok, tasks, one_thread):
    from ssledu.objectives import clm, mlm

    texts = tasks["test"][:3]
    mlm_model = _bert(tok)
    got = battery.intrinsic(mlm_model, tok, texts)
    assert got["cloze_acc"] == pytest.approx(np.mean(mlm.cloze_scores(mlm_model, tok, texts)["correct"]))
    assert math.isnan(got["lm_nll"])
    torch.manual_seed(0)
    gpt = models.gpt(tok, "nano").eval()
    got = battery.intrinsic(gpt, tok, texts)
    assert got["lm_nll"] == pytest.approx(clm.compare_to_floor(gpt, tok, texts)["model_nll"])
    assert math.isnan(got["cloze_acc"])
    bare = battery.intrinsic(_bert(tok, head=None), tok, texts)
    assert math.isnan(bare["cloze_acc"]) and math.isnan(bare["lm_nll"])


def test_adapt_curve_one_row_per_size_and_leaves_the_model_alone(tok, tasks, one_thread):
    model = _bert(tok)
    before = [p.clone() for p in model.parameters()]
    enc = battery.encode_tasks(tok, tasks)
    df, head = battery.adapt_curve(model, "tagging", *enc["tag"], sizes=(2, 100), freeze=False, steps=3)
    assert list(df["n_labels"]) == [2, len(enc["tag"][0])]  # capped at the training set
    assert df["accuracy"].between(0, 1).all() and set(df["method"]) == {"fine-tuned"}
    assert head.task == "tagging" and not head.frozen
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_qa_questions_keep_their_words(tok, tasks):
    """The stories' tokenizer lacks "what", "colour", "size", "where" and "?": a colour and a size
    question about one shape must still be different inputs, and the caller's tokenizer stays."""
    n_before = len(tok)
    enc = battery.encode_tasks(tok, tasks)
    assert len(tok) == n_before and enc["qa_vocab_size"] > n_before
    for q, e in zip(tasks["qa"] + tasks["qa_test"], enc["qa"][0] + enc["qa"][1]):
        n_q = len(q["question"].split())
        assert tok.unk_token_id not in e["input_ids"][1:n_q + 1]
        assert max(e["input_ids"]) < enc["qa_vocab_size"]
    qa = toyworld.qa_pairs(tasks["test"][0])
    two = {**tasks, "qa": [dict(q, context=tasks["test"][0]) for q in qa if q["kind"] in ("colour", "size")][:2]}
    colour, size = battery.encode_tasks(tok, two)["qa"][0]
    assert colour["input_ids"] != size["input_ids"]


def test_evaluate_returns_every_column(tok, tasks, one_thread):
    row, layers, curves = battery.evaluate(_bert(tok), tok, tasks, frame=("[CLS]", "[SEP]"), tag_sizes=(2,),
                                           qa_sizes=(4,), tag_steps=2, qa_steps=2, n_saliency=4)
    expected = {"cloze_acc", "lm_nll", "probe_n_objects", "probe_colour", "probe_relation", "role_acc",
                "role_control", "role_selectivity", "main_colour_acc", "main_colour_control",
                "main_colour_selectivity", "tag_2", "tag_frozen_2", "qa_4", "qa_frozen_4", "saliency_top1",
                "saliency_chance"}
    assert expected <= set(row)
    assert row["role_selectivity"] == pytest.approx(row["role_acc"] - row["role_control"])
    assert 0 <= row["saliency_top1"] <= 1 and 0 < row["saliency_chance"] < 0.2
    assert list(layers["layer"]) == [0, 1, 2]
    assert set(curves["task"]) == {"tag", "qa"} and set(curves["method"]) == {"frozen", "fine-tuned"}
    row, _, curves = battery.evaluate(_bert(tok), tok, tasks, frame=("[CLS]", "[SEP]"), tag_sizes=(2,), qa_sizes=(4,),
                                      cls_sizes=(4,), tag_steps=1, qa_steps=1, cls_steps=2, n_saliency=2)
    assert {"cls_4", "cls_frozen_4"} <= set(row) and set(curves["task"]) == {"tag", "qa", "cls"}


def test_story_classification_labels_are_the_relation(tok, tasks):
    enc = battery.encode_tasks(tok, tasks)
    train, test = enc["cls"]
    assert len(train) == len(tasks["train"]) and len(test) == len(tasks["test"])
    names = [enc["cls_classes"][e["labels"]] for e in train + test]
    assert names == [toyworld.sentence_targets(t)["relation"] for t in tasks["train"] + tasks["test"]]
    assert enc["cls_classes"] == sorted(set(names))


def test_a_classification_head_reads_the_relation(tok, one_thread):
    """Fine-tuned on 64 stories, a nano BERT tells the relation far above the majority label."""
    tasks = battery.toyworld_tasks(n_train=64, n_test=64, n_qa=8, n_qa_test=4, seed=1)
    enc = battery.encode_tasks(tok, tasks)
    df, head = battery.adapt_curve(_bert(tok), "classification", *enc["cls"], sizes=(64,), freeze=False, steps=60)
    majority = probe.majority_baseline(tasks["sentence"]["relation"][:64], tasks["sentence"]["relation"][64:])
    assert head.num_labels == len(enc["cls_classes"])
    assert df["accuracy"].iloc[0] > majority + 0.2, (df["accuracy"].iloc[0], majority)


def test_probe_battery_reads_a_perfect_feature(tok, tasks, monkeypatch, one_thread):
    """Features that spell out the label give a perfect probe, so the plumbing of rows and labels is right."""
    def fake_sentence(model, tokenizer, texts, frame=None):
        y = tasks["sentence"]["relation"]
        classes = sorted(set(y))
        onehot = np.eye(len(classes))[[classes.index(v) for v in y]]
        return onehot[None].repeat(2, 0)

    monkeypatch.setattr(battery, "sentence_features", fake_sentence)
    row, _ = battery.probe_battery(_bert(tok), tok, tasks, ("[CLS]", "[SEP]"))
    y, n = tasks["sentence"]["relation"], len(tasks["train"])
    seen = np.isin(y[n:], y[:n]).mean()  # a class no training story has cannot be predicted
    assert seen > 0.5 and row["probe_relation"] == pytest.approx(seen)
