"""Toyworld's answer key for probes and heads: sentence latents, roles, BIO tags, QA pairs."""

import pytest

from ssledu.data import toyworld

STORY = ("we see two shapes . a big red circle sits on the left . a small blue square is above it . "
         "the square jumps quickly . it is blue . finally the circle was big and red .")


def test_sentence_targets_of_the_docstring_story():
    t = toyworld.sentence_targets(STORY)
    assert t == {"n_objects": 2, "colour": "red", "shape": "circle", "size": "big", "position": "left",
                 "relation": "above", "n_events": 2}
    one = "we see one shape . a small green star rests on the top . finally the star was small and green ."
    assert toyworld.sentence_targets(one)["relation"] == "none"


def test_sentence_targets_agree_with_the_sampled_stories():
    for rec in toyworld.generate_stories(50, seed=4):
        t = toyworld.sentence_targets(rec["text"])
        for key in ("n_objects", "colour", "shape", "size", "position", "n_events"):
            assert t[key] == rec[key]
        rel = [w for w, r in zip(rec["words"], rec["roles"]) if r == "relation"]
        assert t["relation"] == (rel[0] if rel else "none")


def test_role_ids_index_role_names():
    roles = toyworld.word_roles(STORY)
    ids = toyworld.role_ids(STORY)
    assert [toyworld.ROLE_NAMES[i] for i in ids] == roles
    seen = {r for rec in toyworld.generate_stories(200, seed=0) for r in rec["roles"]}
    assert seen <= set(toyworld.ROLE_NAMES)


def test_bio_tags_mark_object_mentions_and_positions():
    tags = toyworld.bio_tags(STORY)
    words = STORY.split()
    assert len(tags) == len(words)
    spans = [(w, t) for w, t in zip(words, tags) if t != "O"]
    assert spans == [("big", "B-OBJ"), ("red", "I-OBJ"), ("circle", "I-OBJ"), ("left", "B-POS"),
                     ("small", "B-OBJ"), ("blue", "I-OBJ"), ("square", "I-OBJ"),
                     ("square", "B-OBJ"), ("circle", "B-OBJ")]
    # "is blue" and "big and red" restate facts: not mentions, so the word alone does not decide
    assert tags[words.index("blue", 20)] == "O" and tags[-2] == "O"
    for rec in toyworld.generate_stories(100, seed=1):
        tags = toyworld.bio_tags(rec["text"])
        assert set(tags) <= set(toyworld.BIO_TAGS)
        for prev, tag in zip(["O"] + tags, tags):  # I- only continues a mention
            assert tag != "I-OBJ" or prev in ("B-OBJ", "I-OBJ")


def test_qa_pairs_point_at_the_answer_and_the_evidence():
    pairs = toyworld.qa_pairs(STORY)
    words = STORY.split()
    assert len(pairs) == 2 * 3 + 1
    first = pairs[0]
    assert first == {"question": "what colour is the circle ?", "kind": "colour", "answer": "red",
                     "answer_start": 7, "answer_end": 7, "evidence": 8}
    by_q = {p["question"]: p for p in pairs}
    assert by_q["what shape is the blue one ?"]["answer"] == "square"
    assert words[by_q["what shape is the blue one ?"]["evidence"]] == "blue"
    assert by_q["where is the circle ?"]["answer"] == "left"
    assert by_q["what size is the square ?"]["answer"] == "small"
    for rec in toyworld.generate_stories(100, seed=2):
        objects = {o["shape"]: o for o in rec["objects"]}
        for p in toyworld.qa_pairs(rec["text"]):
            assert rec["words"][p["answer_start"]] == p["answer"] and p["answer_end"] == p["answer_start"]
            if p["kind"] in ("colour", "size"):
                shape = p["question"].split()[-2]
                assert objects[shape][p["kind"]] == p["answer"]
                assert rec["words"][p["evidence"]] == shape
                assert p["evidence"] == p["answer_start"] + (1 if p["kind"] == "colour" else 2)


def test_generate_qa_is_seeded_and_filters_kinds():
    a = toyworld.generate_qa(30, seed=3)
    assert a == toyworld.generate_qa(30, seed=3)
    assert a != toyworld.generate_qa(30, seed=4)
    assert [q["context"] for q in a] == toyworld.generate_texts(30, seed=3)
    assert {q["kind"] for q in a} == set(toyworld.QA_KINDS)
    only = toyworld.generate_qa(30, seed=3, kinds=("colour",))
    assert {q["kind"] for q in only} == {"colour"}
    with pytest.raises(ValueError, match="kinds"):
        toyworld.generate_qa(3, kinds=("weight",))
