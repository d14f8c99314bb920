"""Helpers that chapter 04 calls: the exact posterior of a blank, blank filling, one story scored
in four views, and two figures (grouped bars, leak-test change maps)."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertForMaskedLM  # noqa: E402

from ssledu import viz  # noqa: E402
from ssledu.data import toyworld  # noqa: E402
from ssledu.objectives import prefix as px  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

STORY = ("we see two shapes . a big red star sits on the left . a small blue circle is near it . "
         "it spins . finally the star was big and red .")


def tiny_mlm(vocab_size=12, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForMaskedLM(cfg).eval()


# ------------------------------------------------------------------------ blank_posterior

def test_blank_posterior_counts_the_shapes_exactly():
    words = STORY.split()
    prompt = words[: words.index("spins") + 2]  # up to "it spins ."
    ambiguous = words[: words.index("it")]  # the introductions only: a third shape may follow
    for w in (prompt, ambiguous):
        w[2] = "_"
    # an event sentence closes the introductions: the count is known
    assert px.blank_posterior(prompt, 2, visible=len(prompt)) == {"two": 1.0}
    # after two introductions a third is as likely as the first event (max_objects 3)
    post = px.blank_posterior(ambiguous, 2, visible=len(ambiguous))
    assert set(post) == {"two", "three"} and post["two"] == pytest.approx(0.5, abs=1e-12)


def test_blank_posterior_matches_bayes_rule_by_enumeration():
    """p(c | rest) proportional to p(story with c), each story's probability from word_nlls."""
    words = STORY.split()
    i = words.index("blue")  # the second object's colour: free, any colour but red
    post = px.blank_posterior(words, i)
    joint = {}
    for c in toyworld.next_word_distribution(words[:i]):
        alt = words[:i] + [c] + words[i + 1:]
        try:
            joint[c] = math.exp(-sum(toyworld.word_nlls(alt)))
        except ValueError:
            pass
    z = sum(joint.values())
    assert set(post) == set(joint) and "red" not in post and len(post) >= 2
    for c, p in joint.items():
        assert post[c] == pytest.approx(p / z, rel=1e-9)
    assert list(post.values()) == sorted(post.values(), reverse=True)
    # and its -log at the true word is the floor blank_nlls gives
    assert -math.log(post["blue"]) == pytest.approx(px.blank_nlls(words)[i], rel=1e-9)


def test_blank_posterior_sees_the_closing_sentence_only_when_visible():
    words = STORY.split()
    i = words.index("red")  # the main object's colour, restated by the closing sentence
    assert px.blank_posterior(words, i) == {"red": 1.0}
    # with only the first sentence visible, red is one colour among several
    first = words.index(".", 5) + 1
    post = px.blank_posterior(words, i, visible=first)
    assert post["red"] < 0.5 and len(post) > 2


def test_blank_posterior_errors_say_what_to_do():
    words = STORY.split()
    with pytest.raises(ValueError, match="position must point at a visible word"):
        px.blank_posterior(words, 10, visible=5)
    with pytest.raises(ValueError, match="visible must be in"):
        px.blank_posterior(words, 0, visible=len(words) + 1)
    broken = "we see two shapes . a big _ star sits on the left . the circle spins .".split()
    with pytest.raises(ValueError, match="no word makes this a text toyworld can produce"):
        px.blank_posterior(broken, 7, visible=len(broken))


# ------------------------------------------------------------------------ fill_blanks

def test_fill_blanks_takes_the_argmax_with_the_prompt_read_both_ways():
    model, MASK = tiny_mlm(), 4
    ids = torch.tensor([2, 7, MASK, 9, 10, MASK, 8])
    filled, probs = px.fill_blanks(model, ids, MASK)
    assert probs.shape == (2, 12) and torch.allclose(probs.sum(-1), torch.ones(2))
    blanks = torch.tensor([2, 5])
    kept = [0, 1, 3, 4, 6]
    assert torch.equal(filled[blanks], probs.argmax(-1)) and torch.equal(filled[kept], ids[kept])
    # both ways: the first blank reacts to a word on its right (a causal view would not)
    moved = ids.clone()
    moved[6] = 11
    assert not torch.allclose(px.fill_blanks(model, moved, MASK)[1][0], probs[0])
    same, none = px.fill_blanks(model, torch.tensor([2, 7, 9]), MASK)
    assert torch.equal(same, torch.tensor([2, 7, 9])) and none.shape == (0, 12)


# ------------------------------------------------------------------------ score_views

def test_score_views_rows_and_views_by_position():
    model, MASK = tiny_mlm(), 4
    ids = torch.tensor([2, 7, 8, 9, 10, 11, 5, 3])  # [BOS] 6 words [EOS]
    P = 4
    rows = px.score_views(model, ids, P, MASK)
    assert [r["word"] for r in rows] == list(range(6))
    for r in rows:
        t = r["word"] + 1
        assert r["in_prompt"] == (t < P)
        assert ("prefix_nll" in r) == (t >= P) and ("mlm_prompt_nll" in r) == (t < P)
        assert {"causal_nll", "mlm_nll", "causal_hit", "mlm_hit"} <= set(r)
    # by hand: the causal view of word w is the output at t - 1 under the causal mask
    with torch.no_grad():
        logits = model(input_ids=ids[None], attention_mask=px.causal_mask(torch.ones(1, 8))).logits[0]
    nll = -logits.log_softmax(-1)[torch.arange(1, 7) - 1, ids[1:7]]
    assert [r["causal_nll"] for r in rows] == pytest.approx(nll.tolist(), rel=1e-5)


def test_score_views_prompt_view_cannot_see_the_continuation():
    model, MASK = tiny_mlm(), 4
    ids = torch.tensor([2, 7, 8, 9, 10, 11, 5, 3])
    other = ids.clone()
    other[5:7] = torch.tensor([6, 9])  # a different continuation
    P = 4
    a, b = px.score_views(model, ids, P, MASK), px.score_views(model, other, P, MASK)
    prompt = [w for w in range(6) if w + 1 < P]
    assert [a[w]["mlm_prompt_nll"] for w in prompt] == [b[w]["mlm_prompt_nll"] for w in prompt]
    # ... while the whole-story view of the same words does
    assert [a[w]["mlm_nll"] for w in prompt] != [b[w]["mlm_nll"] for w in prompt]
    # P = 1: the prefix mask is the causal mask, the two next-token views agree
    one = px.score_views(model, ids, 1, MASK)
    assert [r["prefix_nll"] for r in one] == pytest.approx([r["causal_nll"] for r in one], abs=1e-6)
    with pytest.raises(ValueError, match="prefix_length must be in"):
        px.score_views(model, ids, 8, MASK)


# ------------------------------------------------------------------------ figures

@pytest.fixture
def no_figure_leaks():
    plt.close("all")
    yield
    assert plt.get_fignums() == []


def test_grouped_bars_draws_every_value(no_figure_leaks):
    frame = pd.DataFrame({"left": [0.2, 0.7], "both": [0.5, 0.75]}, index=["forward_copy", "free"])
    fig = viz.grouped_bars(frame, title="t", ylabel="accuracy", group_sizes={"forward_copy": 3, "free": 9})
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([0.2, 0.7, 0.5, 0.75])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["forward_copy\n(3 words)", "free\n(9 words)"]
    assert ax.get_ylabel() == "accuracy" and ax.get_title() == "t"
    with pytest.raises(ValueError, match="at least one row"):
        viz.grouped_bars(pd.DataFrame(), title="t", ylabel="y")


def test_leak_change_maps_white_exactly_where_nothing_moved(no_figure_leaks):
    change = torch.tensor([[0.5, 0.0], [1e-7, 0.2]])
    fig = viz.leak_change_maps({"a": {"change": change, "leaks": [(1, 0)]}}, ["x", "y"], title="t")
    im = fig.axes[0].images[0].get_array()
    assert list(np.ma.getmaskarray(im).ravel()) == [False, True, False, False]  # a 1e-7 leak is drawn
    assert im[1, 0] == pytest.approx(-7)
    assert "1 leaks" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="2 tokens"):
        viz.leak_change_maps({"a": {"change": torch.zeros(3, 3), "leaks": []}}, ["x", "y"], title="t")
