"""Tests of ssledu.data.toyworld: exact probabilities, position kinds, labels, scenes."""

import math
import time
from collections import Counter, defaultdict

import numpy as np
import pytest

from ssledu.data import toyworld as tw
from ssledu.data.toyworld import World

TINY = World.tiny()
CONTENT_ROLES = {"number", "size", "colour", "shape"}


def possible(words, world=None) -> bool:
    try:
        tw.true_nll(words, world)
    except ValueError:
        return False
    return True


def dfs_texts(world):
    """All texts with probability > 0, by depth-first search over the public
    next-word distribution (independent of enumerate_texts)."""
    out = {}

    def visit(prefix, p):
        for word, q in tw.next_word_distribution(prefix, world).items():
            assert q > 0
            if word == tw.EOS:
                out[" ".join(prefix)] = p * q
            else:
                visit(prefix + [word], p * q)

    visit([], 1.0)
    return out


@pytest.fixture(scope="module")
def tiny_texts():
    return dfs_texts(TINY)


# --- generation ---------------------------------------------------------------------

def test_generation_is_determined_by_seed_and_prefix_stable():
    a = tw.generate_texts(60, seed=3)
    assert a == tw.generate_texts(60, seed=3)
    assert tw.generate_texts(25, seed=3) == a[:25]
    b = tw.generate_texts(60, seed=4)
    assert sum(x != y for x, y in zip(a, b)) > 40
    vocab = set(tw.vocabulary())
    for text in a:
        assert text == text.strip().lower() and "  " not in text
        assert " ".join(text.split()) == text
        assert set(text.split()) <= vocab
        assert text.startswith("we see ") and text.endswith(" .")


def test_default_vocabulary_is_exactly_what_samples_use():
    words = {w for t in tw.generate_texts(1500, seed=0) for w in t.split()}
    assert words == set(tw.vocabulary())
    assert tw.EOS not in tw.vocabulary()


def test_modest_generation_is_fast():
    start = time.perf_counter()
    texts = tw.generate_texts(3000, seed=1)
    elapsed = time.perf_counter() - start
    assert sum(len(t.split()) for t in texts) > 80_000
    assert elapsed < 5.0  # about 0.1 s on an idle CPU; generous for a shared machine


def test_next_word_distribution_examples():
    d = tw.next_word_distribution("we see")
    assert d == pytest.approx({"one": 1 / 3, "two": 1 / 3, "three": 1 / 3})
    d = tw.next_word_distribution("we see two shapes . a big red circle is on the left . a small")
    assert set(d) == {"blue", "green", "yellow", "purple", "orange"}  # colours are distinct
    assert sum(d.values()) == pytest.approx(1.0, abs=1e-12)
    d = tw.next_word_distribution("we see one shape . a big red circle is on the left . it is")
    assert d == {"red": 1.0}  # the pronoun's referent is known
    assert tw.next_word_distribution("we see one shape . a big red circle is on the left . "
                                     "finally the circle was big and red .") == {tw.EOS: 1.0}


# --- exact probabilities on the tiny world ---------------------------------------------

def test_tiny_world_probabilities_sum_to_one(tiny_texts):
    assert len(tiny_texts) == 376
    assert abs(sum(tiny_texts.values()) - 1.0) < 1e-9
    ref = tw.enumerate_texts(TINY)
    assert set(ref) == set(tiny_texts)
    for text, p in tiny_texts.items():
        assert ref[text] == pytest.approx(p, rel=1e-12)
        assert math.exp(-tw.true_nll(text, TINY)) == pytest.approx(p, rel=1e-12)
    assert {w for t in tiny_texts for w in t.split()} == set(tw.vocabulary(TINY))


def test_true_nll_by_hand():
    # 1 object (1/2), size, colour, shape (1/2 each), no event (1/2): p = 1/32.
    text = "we see one shape . a small red circle is on the left . finally the circle was small and red ."
    assert tw.true_nll(text, TINY) == pytest.approx(math.log(32), abs=1e-12)
    nlls = tw.word_nlls(text, TINY)
    assert len(nlls) == len(text.split()) + 1 and nlls[-1] == 0.0
    assert sum(x > 0 for x in nlls) == 5
    # Default world, one event "it jumps .": 1/3 * 1/3 * 1/6 * 1/5 * 1/3 (verb) * 1/4 (position)
    # * 0.7 * 0.35 (event, "it") * 0.6 / 6 (action) * 0.7 (no adverb) * 0.3 (closing) * 1/2.
    text = ("we see one shape . a big red circle sits on the left . it jumps . "
            "finally the circle was big and red .")
    p = (1 / 3) * (1 / 3) * (1 / 6) * (1 / 5) * (1 / 3) * (1 / 4) * 0.7 * 0.35 * 0.1 * 0.7 * 0.3 * 0.5
    assert tw.true_nll(text) == pytest.approx(-math.log(p), rel=1e-12)


def test_sampling_matches_exact_probabilities(tiny_texts):
    n = 20_000
    texts, logps = tw.generate_texts(n, seed=11, world=TINY, return_logprobs=True)
    counts = Counter(texts)
    assert set(counts) <= set(tiny_texts)
    # The log-probability used while sampling is what scoring reads back.
    for text, lp in zip(texts[:3000], logps[:3000]):
        assert lp == pytest.approx(math.log(tiny_texts[text]), abs=1e-12)
    for text in counts:
        assert -tw.true_nll(text, TINY) == pytest.approx(logps[texts.index(text)], abs=1e-12)
    # Pearson chi-square over all 376 stories (expected counts >= 4.9).
    chi2 = sum((counts.get(t, 0) - n * p) ** 2 / (n * p) for t, p in tiny_texts.items())
    df = len(tiny_texts) - 1
    assert chi2 < df + 4 * math.sqrt(2 * df)
    # Mean NLL of samples ~ entropy of the tiny world.
    entropy = -sum(p * math.log(p) for p in tiny_texts.values())
    sd = math.sqrt(sum(p * math.log(p) ** 2 for p in tiny_texts.values()) - entropy ** 2)
    assert abs(-np.mean(logps) - entropy) < 4 * sd / math.sqrt(n)


def test_bayes_floor_is_nll_per_predicted_token():
    texts = tw.generate_texts(40, seed=2)
    total = sum(tw.true_nll(t) for t in texts)
    tokens = sum(len(t.split()) + 1 for t in texts)
    assert tw.bayes_floor(texts) == pytest.approx(total / tokens, rel=1e-12)
    assert 0.3 < tw.bayes_floor(texts) < 0.8


# --- position kinds ------------------------------------------------------------------

def expected_kind(role, nll, determined):
    if role not in CONTENT_ROLES:
        return "free"
    if nll == 0.0:
        return "backward_copy"
    return "forward_copy" if determined else "free"


def test_kinds_match_their_definition_on_every_tiny_story(tiny_texts):
    # Determined by the rest of the text <=> no other possible story differs only there.
    by_gap = defaultdict(int)
    for text in tiny_texts:
        words = text.split()
        for i in range(len(words)):
            by_gap[(len(words), i, tuple(words[:i]), tuple(words[i + 1:]))] += 1
    seen = Counter()
    for text in tiny_texts:
        words = text.split()
        kinds = tw.position_kinds(text, TINY)
        roles = tw.word_roles(text, TINY)
        nlls = tw.word_nlls(text, TINY)
        for i, w in enumerate(words):
            determined = by_gap[(len(words), i, tuple(words[:i]), tuple(words[i + 1:]))] == 1
            assert kinds[i] == expected_kind(roles[i], nlls[i], determined), (text, i, w)
        seen.update(kinds)
    assert set(seen) == set(tw.KINDS)


# Three colours and shapes for three objects: the last free colour is forced, and a
# colour can be pinned because every alternative is taken by a later object.
CROWDED = World(colours=("red", "blue", "green"), shapes=("circle", "square", "triangle"),
                sizes=("small", "big"), positions=("left", "right"), intro_verbs=("is",),
                relations=("above", "near"), actions=("jumps", "spins"), adverbs=("again",),
                closing_verbs=("was",), max_objects=3, max_events=3, p_event=0.6, p_restate=0.6)


@pytest.mark.parametrize("world,n", [(None, 16), (CROWDED, 16)], ids=["default", "crowded"])
def test_kinds_match_their_definition_on_sampled_stories(world, n):
    vocab = tw.vocabulary(world)
    seen = Counter()
    for rec in tw.generate_stories(n, seed=5, world=world):
        words, kinds, nlls = rec["words"], rec["kinds"], rec["word_nlls"]
        assert kinds == tw.position_kinds(rec["text"], world)
        assert rec["roles"] == tw.word_roles(rec["text"], world)
        for i, w in enumerate(words):
            if rec["roles"][i] not in CONTENT_ROLES:
                assert kinds[i] == "free"
                continue
            # Substitute every other word of the vocabulary at position i.
            others = [v for v in vocab if v != w and possible(words[:i] + [v] + words[i + 1:], world)]
            assert kinds[i] == expected_kind(rec["roles"][i], nlls[i], not others), (rec["text"], i, w)
            if kinds[i] == "backward_copy":
                assert nlls[i] == 0.0
            seen[(rec["roles"][i], kinds[i])] += 1
    assert seen[("colour", "forward_copy")] and seen[("shape", "forward_copy")]
    assert seen[("shape", "backward_copy")] and seen[("colour", "free")]


def test_kind_fractions_are_useful():
    stories = tw.generate_stories(400, seed=8)
    kinds = Counter(k for r in stories for k in r["kinds"])
    total = sum(kinds.values())
    assert 0.08 < kinds["forward_copy"] / total < 0.2
    assert 0.07 < kinds["backward_copy"] / total < 0.2
    assert all(any(k == "forward_copy" for k in r["kinds"]) for r in stories)
    # Free content words carry the entropy; copies of both kinds have a causal floor of 0
    # (backward) or not (forward).
    free_nll = [n for r in stories for k, n, ro in zip(r["kinds"], r["word_nlls"], r["roles"])
                if k == "free" and ro in CONTENT_ROLES]
    assert free_nll and min(free_nll) > 0
    fwd = [n for r in stories for k, n in zip(r["kinds"], r["word_nlls"]) if k == "forward_copy"]
    assert min(fwd) > 0 and np.mean(fwd) > 1.0


# --- labels and datasets ---------------------------------------------------------------

def test_story_labels_are_consistent_with_the_text():
    w = World()
    for rec in tw.generate_stories(150, seed=9):
        words = rec["words"]
        assert rec["text"] == " ".join(words)
        assert rec["nll"] == pytest.approx(tw.true_nll(rec["text"]), abs=1e-12)
        assert rec["word_nlls"] == tw.word_nlls(rec["text"])
        # closing: finally the SHAPE VERB SIZE and COLOUR .
        assert words[-8] == "finally" and words[-7] == "the"
        assert (words[-6], words[-4], words[-2]) == (rec["shape"], rec["size"], rec["colour"])
        assert words[6:9] == [rec["size"], rec["colour"], rec["shape"]]
        assert words[2] == tw.NUMBER_WORDS[rec["n_objects"] - 1]
        assert sum(1 for i, x in enumerate(words) if x == "a" and words[i - 1] == ".") == rec["n_objects"]
        objs = rec["objects"]
        assert len({o["colour"] for o in objs}) == len({o["shape"] for o in objs}) == len(objs)
        lists = {"colour": w.colours, "shape": w.shapes, "size": w.sizes, "position": w.positions,
                 "action": w.actions, "relation": w.relations, "adverb": w.adverbs}
        for word, role in zip(words, rec["roles"]):
            if role in lists:
                assert word in lists[role]
        attrs = tw.story_attributes(rec["text"])
        assert {k: rec[k] for k in attrs} == attrs


def test_load_toyworld_splits():
    ds = tw.load_toyworld(n_train=60, n_validation=20, n_test=20, seed=1)
    assert {k: len(v) for k, v in ds.items()} == {"train": 60, "validation": 20, "test": 20}
    row = ds["train"][0]
    assert set(row) >= {"text", "colour", "shape", "size", "n_objects", "kinds", "roles", "nll"}
    assert isinstance(row["colour"], str) and isinstance(row["n_objects"], int)
    assert len(row["kinds"]) == len(row["roles"]) == len(row["text"].split())
    assert row["nll"] == pytest.approx(tw.true_nll(row["text"]))
    assert len(set(ds["validation"]["text"]) & set(ds["test"]["text"])) < 5
    again = tw.load_toyworld(n_train=10, n_validation=20, n_test=5, seed=1)
    assert again["validation"]["text"] == ds["validation"]["text"]  # fixed per split
    assert again["train"]["text"] == ds["train"]["text"][:10]
    other = tw.load_toyworld(n_train=10, n_validation=20, n_test=5, seed=2)
    assert other["validation"]["text"] != ds["validation"]["text"]


# --- bad input -----------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="position 3"):
        tw.true_nll("we see two shape .")
    with pytest.raises(ValueError, match=r"word 2 'seven' is not in the toyworld vocabulary"):
        tw.word_nlls("we see seven shapes .")
    with pytest.raises(ValueError, match="end of the text"):
        tw.true_nll("we see one shape .")
    with pytest.raises(ValueError, match="position 21"):  # the closing must restate the size
        tw.true_nll("we see one shape . a big red circle sits on the left . it jumps . "
                    "finally the circle was small and red .")
    with pytest.raises(ValueError, match="cannot produce"):
        tw.position_kinds("we see one shape . a big red circle sits on the left . "
                          "finally the circle was big and red . it")
    with pytest.raises(ValueError, match="non-negative"):
        tw.generate_texts(-1)
    with pytest.raises(ValueError, match="non-negative"):
        tw.generate_texts(3, seed=-2)
    with pytest.raises(ValueError, match="non-negative"):
        tw.generate_scenes(-1)
    with pytest.raises(ValueError, match="distinct colours and shapes"):
        World(colours=("red", "blue"), max_objects=3)
    with pytest.raises(ValueError, match="one role"):
        World(actions=("red", "jumps"))
    with pytest.raises(ValueError, match="probability"):
        World(p_event=1.5)
    with pytest.raises(ValueError, match="no RGB value"):
        tw.generate_scenes(2, world=World(colours=("red", "blue", "teal")))


# --- scenes --------------------------------------------------------------------------

def test_scenes_shapes_and_determinism():
    s = tw.generate_scenes(40, seed=0, size=32)
    assert s["images"].shape == (40, 32, 32, 3) and s["images"].dtype == np.uint8
    assert len(s["captions"]) == len(s["attributes"]) == 40
    assert np.array_equal(s["images"], tw.generate_scenes(40, seed=0)["images"])
    assert s["captions"] == tw.generate_scenes(40, seed=0)["captions"]
    assert not np.array_equal(s["images"], tw.generate_scenes(40, seed=1)["images"])
    counts = Counter(len(a["objects"]) for a in s["attributes"])
    assert set(counts) == {1, 2, 3}
    assert tw.generate_scenes(3, seed=0, size=64)["images"].shape == (3, 64, 64, 3)


def pixel_colours(img):
    found = {}
    for name, rgb in tw.COLOUR_RGB.items():
        mask = np.all(img == np.array(rgb, dtype=np.uint8), axis=-1)
        if mask.any():
            ys, xs = np.nonzero(mask)
            found[name] = (int(mask.sum()), xs.mean(), ys.mean())
    return found


def test_scene_captions_describe_the_pixels():
    s = tw.generate_scenes(60, seed=3)
    rel_checked = 0
    for img, cap, attr in zip(s["images"], s["captions"], s["attributes"]):
        found = pixel_colours(img)
        named = [w for w in cap.split() if w in tw.COLOUR_RGB]
        assert set(named) == set(found), cap
        painted = np.any(img != np.array(tw.BACKGROUND_RGB, dtype=np.uint8), axis=-1).sum()
        assert painted == sum(v[0] for v in found.values())  # nothing but the shapes
        objs = attr["objects"]
        assert cap.startswith(f"a {objs[0]['size']} {objs[0]['colour']} {objs[0]['shape']}")
        parts = cap.split(" and ")
        for part, obj in zip(parts, objs[1:]):
            # "... left of a small blue square": check with pixel centroids
            first, other = found[objs[0]["colour"]], found[obj["colour"]]
            dx, dy = first[1] - other[1], first[2] - other[2]
            if "left of" in part:
                assert dx < 0 and abs(dx) >= abs(dy) - 1
            elif "right of" in part:
                assert dx > 0 and abs(dx) >= abs(dy) - 1
            elif "above" in part:
                assert dy < 0 and abs(dy) >= abs(dx) - 1
            else:
                assert "below" in part and dy > 0 and abs(dy) >= abs(dx) - 1
            rel_checked += 1
    assert rel_checked > 20


def test_scene_sizes_are_visible():
    s = tw.generate_scenes(150, seed=4)
    areas = defaultdict(list)
    for img, attr in zip(s["images"], s["attributes"]):
        found = pixel_colours(img)
        for obj in attr["objects"]:
            areas[(obj["shape"], obj["size"])].append(found[obj["colour"]][0])
    sizes = World().sizes
    for shape in World().shapes:
        means = [np.mean(areas[(shape, z)]) for z in sizes if areas[(shape, z)]]
        assert len(means) == len(sizes) and all(a < b for a, b in zip(means, means[1:])), shape
