"""Helpers that chapter 02 calls: the Bayes-optimal guess of a toyworld word from the left or
from both sides, a model's top guesses on rows of any length, and one intruder word per row."""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from ssledu.data import toyworld
from ssledu.objectives import mlm

pytestmark = pytest.mark.usefixtures("one_thread")

STORY = ("we see two shapes . a big red circle sits on the left . a small blue square is above it . "
         "finally the circle was big and red .")


def tiny_mlm(vocab_size=12, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0,
                     initializer_range=0.5)  # large weights: attending to padding would change the guesses
    return BertForMaskedLM(cfg)


# ------------------------------------------------------------------- best_guess_accuracy

def test_best_guess_from_the_left_and_from_both_sides_on_the_example_story():
    words = STORY.split()
    best = toyworld.best_guess_accuracy(STORY)
    assert len(best["left"]) == len(best["both"]) == len(words)
    red = words.index("red")
    assert best["left"][red] == pytest.approx(1 / 6)  # any of the six colours
    assert best["both"][red] == pytest.approx(1.0)  # the closing sentence says red
    two = words.index("two")
    assert best["left"][two] == pytest.approx(1 / 3) and best["both"][two] == pytest.approx(1.0)
    blue = words.index("blue")  # never restated: five colours remain, from both sides too
    assert best["left"][blue] == pytest.approx(0.2) and best["both"][blue] == pytest.approx(0.2)


def test_best_guess_agrees_with_the_position_kinds():
    for story in toyworld.generate_texts(5, seed=3):
        best = toyworld.best_guess_accuracy(story)
        for kind, left, both in zip(toyworld.position_kinds(story), best["left"], best["both"]):
            if kind == "backward_copy":
                assert left == pytest.approx(1.0)
            if kind != "free":  # a copy is fixed by the rest of the story
                assert both == pytest.approx(1.0)
            assert 0 < left <= 1 + 1e-12 and 0 < both <= 1 + 1e-12


def test_best_guess_rejects_an_impossible_story():
    with pytest.raises(ValueError):
        toyworld.best_guess_accuracy("we see two shapes . a big red banana sits on the left .")


# ----------------------------------------------------------------------- top_predictions

def test_top_predictions_equal_one_row_at_a_time_and_restore_the_mode():
    model = tiny_mlm()
    model.train()
    rows = [[1, 5, 6, 7, 2], [1, 8, 2], [1, 9, 10, 11, 5, 6, 2]]
    got = mlm.top_predictions(model, rows, pad_id=0, batch_size=2)
    assert model.training, "the training flag must be restored"
    assert [len(g) for g in got] == [len(r) for r in rows]
    model.eval()
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([r])).logits[0].argmax(-1).tolist() for r in rows]
    assert got == alone  # padding and neighbours change nothing


def test_top_predictions_rejects_a_string():
    with pytest.raises(ValueError, match="list of token-id lists"):
        mlm.top_predictions(tiny_mlm(), "we see two shapes")


# --------------------------------------------------------------------- replace_one_token

def test_replace_one_token_changes_exactly_one_inner_token_reproducibly():
    rows = [[1, 7, 8, 9, 10, 2], [1, 7, 2], [1, 9, 9, 9, 2]] * 20
    new, at = mlm.replace_one_token(rows, 7, 12, seed=0)
    again, at_again = mlm.replace_one_token(rows, 7, 12, seed=0)
    assert (new, at) == (again, at_again)
    for row, changed, i in zip(rows, new, at):
        diff = [k for k, (a, b) in enumerate(zip(row, changed)) if a != b]
        assert diff == [i] and 0 < i < len(row) - 1
        assert 7 <= changed[i] < 12
    assert len(set(at[::3])) > 1, "the position is drawn, not fixed"


def test_replace_one_token_needs_room_for_an_intruder():
    with pytest.raises(ValueError, match="two ids"):
        mlm.replace_one_token([[1, 7, 2]], 7, 8)
    with pytest.raises(ValueError, match="row 0"):
        mlm.replace_one_token([[1, 2]], 7, 12)
