"""Toyworld: a seeded little language whose exact probabilities are known.

A story is produced left to right by ONE stochastic process: given the state reached by
the words so far, it returns the distribution over the next word, with ``"<eos>"`` for the
end of the text. Sampling draws from that distribution and scoring reads a text back
through the same code, so :func:`true_nll` is exact: it is the Bayes-optimal loss, the
floor that no language model can beat on this corpus.

A story from the default :class:`World`::

    we see two shapes . a big red circle sits on the left . a small blue square is
    above it . the square jumps quickly . it is blue . finally the circle was big and red .

Grammar (every choice is uniform unless a probability of the world says otherwise)::

    opener   we see NUMBER shape(s) .                               NUMBER ~ 1..max_objects
    intro    a SIZE COLOUR SHAPE VERB on the POSITION .             the first, "main" object
             a SIZE COLOUR SHAPE VERB RELATION (it | the SHAPE) .   each further object
    event    (it | the SHAPE) (ACTION [ADVERB] | is COLOUR | looks SIZE) .   0..max_events
    closing  finally the SHAPE CLOSING_VERB SIZE and COLOUR .       the main object again

The objects of a story have distinct colours and distinct shapes. ``it`` is the object
mentioned last; ``the SHAPE`` names an object already introduced. ``is COLOUR`` and
``looks SIZE`` restate a fact about the object the sentence is about.

Position kinds. Content words are the number, size, colour and shape words (the facts the
stories restate); each word of a text gets one kind:

- ``backward_copy``: a content word whose probability given the words before it is 1
  (a restated fact, a pronoun resolved, the last colour left): a causal model can know it.
- ``forward_copy``: a content word with probability < 1 given its prefix that the rest of
  the text determines: any other word there makes the text impossible (the main object's
  size, colour and shape, restated by the closing sentence; the number of shapes, counted
  by the introductions; ``the circle`` when a later ``is red`` shows which object it was).
  Only a model that reads to the right can know it.
- ``free``: everything else, i.e. content words that stay open, and every function word
  (some of which grammar forces, like ``.`` after ``is red``; see :func:`word_roles`).

Scenes (:func:`generate_scenes`) draw 1 to 3 shapes of the same world with numpy and
caption them ("a big red circle left of a small blue square").
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

__all__ = [
    "EOS",
    "World",
    "vocabulary",
    "next_word_distribution",
    "generate_texts",
    "generate_stories",
    "word_nlls",
    "true_nll",
    "bayes_floor",
    "best_guess_accuracy",
    "position_kinds",
    "word_roles",
    "story_attributes",
    "enumerate_texts",
    "load_toyworld",
    "generate_scenes",
    "COLOUR_RGB",
    "BACKGROUND_RGB",
    "SHAPES_DRAWN",
    "KINDS",
    "CONTENT_ROLES",
    "NUMBER_WORDS",
]

EOS = "<eos>"
"""The end-of-text event, as it appears in :func:`next_word_distribution`."""

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six")
KINDS = ("backward_copy", "forward_copy", "free")
CONTENT_ROLES = ("number", "size", "colour", "shape")

# Words the grammar itself uses, with their roles.
_FIXED_ROLES = {
    "we": "pronoun",
    "see": "verb",
    "shape": "noun",
    "shapes": "noun",
    ".": "punct",
    "a": "determiner",
    "the": "determiner",
    "on": "preposition",
    "it": "pronoun",
    "is": "verb",
    "looks": "verb",
    "finally": "other",
    "and": "other",
}
_LIST_ROLES = {
    "colours": "colour",
    "shapes": "shape",
    "sizes": "size",
    "positions": "position",
    "intro_verbs": "verb",
    "relations": "relation",
    "actions": "action",
    "adverbs": "adverb",
    "closing_verbs": "verb",
}


@dataclass(frozen=True)
class World:
    """Configuration of the toy world: word lists, story length and choice probabilities.

    ``World()`` is the rich default the chapters use; ``World.tiny()`` is small enough that
    every story can be enumerated. Word lists are tuples of lowercase words; a word keeps
    one role across lists (``"is"`` may be both an intro verb and the grammar's ``is``).

    - ``max_objects``: a story introduces 1..max_objects objects (uniform).
    - ``max_events`` / ``p_event``: after the introductions, another event sentence
      follows with probability ``p_event`` (at most ``max_events``), else the closing.
    - ``p_pronoun``: probability that a reference is ``it`` rather than ``the SHAPE``.
    - ``p_restate``: probability that an event restates a fact (``is COLOUR`` or
      ``looks SIZE``, half each) rather than naming an action.
    - ``p_adverb``: probability of an adverb after an action.
    """

    colours: tuple[str, ...] = ("red", "blue", "green", "yellow", "purple", "orange")
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star")
    sizes: tuple[str, ...] = ("small", "medium", "big")
    positions: tuple[str, ...] = ("left", "right", "top", "bottom")
    intro_verbs: tuple[str, ...] = ("is", "sits", "rests")
    relations: tuple[str, ...] = ("above", "below", "near", "behind")
    actions: tuple[str, ...] = ("moves", "spins", "jumps", "rolls", "waits", "shakes")
    adverbs: tuple[str, ...] = ("slowly", "quickly", "again")
    closing_verbs: tuple[str, ...] = ("was", "looked")
    max_objects: int = 3
    max_events: int = 4
    p_event: float = 0.7
    p_pronoun: float = 0.35
    p_restate: float = 0.4
    p_adverb: float = 0.3

    @classmethod
    def tiny(cls) -> "World":
        """Two colours, two shapes, two sizes, at most two objects and one event:
        376 possible stories, small enough to enumerate (see :func:`enumerate_texts`)."""
        return cls(
            colours=("red", "blue"),
            shapes=("circle", "square"),
            sizes=("small", "big"),
            positions=("left",),
            intro_verbs=("is",),
            relations=("above",),
            actions=("jumps",),
            adverbs=(),
            closing_verbs=("was",),
            max_objects=2,
            max_events=1,
            p_event=0.5,
            p_pronoun=0.5,
            p_restate=0.5,
            p_adverb=0.0,
        )

    def __post_init__(self):
        roles: dict[str, str] = {}
        for f in fields(self):
            if f.name not in _LIST_ROLES:
                continue
            value = getattr(self, f.name)
            if isinstance(value, str):
                raise ValueError(f"World.{f.name} must be a list of words, not the string {value!r}")
            value = tuple(value)
            object.__setattr__(self, f.name, value)
            if len(set(value)) != len(value):
                raise ValueError(f"World.{f.name} has repeated words: {value}")
            for w in value:
                if not isinstance(w, str) or not w or w != w.lower() or w.split() != [w] or w in (".", EOS):
                    raise ValueError(
                        f"World.{f.name} contains {w!r}; words must be non-empty lowercase "
                        "strings without spaces, and not '.' or '<eos>'"
                    )
                role = _LIST_ROLES[f.name]
                if roles.get(w, role) != role:
                    raise ValueError(f"word {w!r} is used both as {roles[w]} and as {role}; give it one role")
                roles[w] = role
        for name in ("colours", "shapes", "sizes", "positions", "intro_verbs", "actions", "closing_verbs"):
            if not getattr(self, name):
                raise ValueError(f"World.{name} must not be empty")
        if not isinstance(self.max_objects, int) or not 1 <= self.max_objects <= len(NUMBER_WORDS):
            raise ValueError(
                f"max_objects must be an integer in 1..{len(NUMBER_WORDS)}; got {self.max_objects!r}"
            )
        if self.max_objects > min(len(self.colours), len(self.shapes)):
            raise ValueError(
                f"max_objects={self.max_objects} needs at least that many colours and shapes "
                f"(objects have distinct colours and shapes); have {len(self.colours)} and {len(self.shapes)}"
            )
        if self.max_objects > 1 and not self.relations:
            raise ValueError("World.relations must not be empty when max_objects > 1")
        if not isinstance(self.max_events, int) or self.max_events < 0:
            raise ValueError(f"max_events must be a non-negative integer; got {self.max_events!r}")
        for name in ("p_event", "p_pronoun", "p_restate", "p_adverb"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]; got {p!r}")
        fixed = dict(_FIXED_ROLES)
        fixed.update({w: "number" for w in NUMBER_WORDS})
        for w, role in roles.items():
            if w in fixed and fixed[w] != role:
                raise ValueError(
                    f"word {w!r} is reserved by the grammar as a {fixed[w]}; it cannot be a {role}"
                )


# --- the process ---------------------------------------------------------------
# A state is a pair (phase, (n_objects, objects, focus, n_events, pending)):
#   the phase says which slot of the grammar comes next; objects: tuple of (size, colour,
#   shape) indices in order of introduction; focus: index of the object "it" refers to;
#   pending: (size,) or (size, colour) while an object is being introduced.

(START, SEE, COUNT, NOUN, OPENER_DOT, INTRO_A, INTRO_SIZE, INTRO_COLOUR, INTRO_SHAPE,
 INTRO_VERB, ON, ON_THE, POSITION, RELATION, REL_REF, REL_SHAPE, INTRO_DOT, BODY,
 SUBJ_SHAPE, PRED, ADV, SENT_DOT, IS_COLOUR, LOOKS_SIZE, CLOSE_THE, CLOSE_SHAPE,
 CLOSE_VERB, CLOSE_SIZE, CLOSE_AND, CLOSE_COLOUR, CLOSE_DOT, END, DONE) = range(33)
_N_PHASES = 33
_CONTENT_PHASES = frozenset({COUNT, INTRO_SIZE, INTRO_COLOUR, INTRO_SHAPE, REL_SHAPE, SUBJ_SHAPE,
                             IS_COLOUR, LOOKS_SIZE, CLOSE_SHAPE, CLOSE_SIZE, CLOSE_COLOUR})
_START_STATE = (START, (0, (), -1, 0, None))
_NOTHING = ((), ())


def _choice(pairs):
    """(words, probs) from (word, prob) pairs, dropping impossible words."""
    kept = [(w, float(p)) for w, p in pairs if p > 0]
    if len(kept) == 1:
        return (kept[0][0],), (1.0,)
    return tuple(w for w, _ in kept), tuple(p for _, p in kept)


def _uniform(words):
    words = tuple(words)
    return words, tuple(1.0 / len(words) for _ in words)


class _Process:
    """The story process of one World: ``options(state)`` and ``advance(state, word)``."""

    def __init__(self, world: World):
        self.world = w = world
        self.size_id = {x: i for i, x in enumerate(w.sizes)}
        self.colour_id = {x: i for i, x in enumerate(w.colours)}
        self.shape_id = {x: i for i, x in enumerate(w.shapes)}
        self.count_words = NUMBER_WORDS[: w.max_objects]
        one = lambda word: ((word,), (1.0,))  # noqa: E731
        continue_p = w.p_event
        body_open = _choice([("it", continue_p * w.p_pronoun), ("the", continue_p * (1 - w.p_pronoun)),
                             ("finally", 1 - continue_p)])
        self.body_open, self.body_closed = body_open, one("finally")
        restate = w.p_restate
        self.pred = _choice([(a, (1 - restate) / len(w.actions)) for a in w.actions]
                            + [("is", restate / 2), ("looks", restate / 2)])
        p_adv = w.p_adverb if w.adverbs else 0.0
        self.adv = _choice([(".", 1 - p_adv)] + [(a, p_adv / max(1, len(w.adverbs))) for a in w.adverbs])
        self.rel_ref = _choice([("it", w.p_pronoun), ("the", 1 - w.p_pronoun)])
        self.shape_noun = (one("shape"), one("shapes"))
        # Options that do not depend on the state; None where they do.
        static = [None] * _N_PHASES
        static[START], static[SEE] = one("we"), one("see")
        static[COUNT] = _uniform(self.count_words)
        static[OPENER_DOT] = static[INTRO_DOT] = static[SENT_DOT] = static[CLOSE_DOT] = one(".")
        static[INTRO_A] = one("a")
        static[INTRO_SIZE] = _uniform(w.sizes)
        static[INTRO_VERB] = _uniform(w.intro_verbs)
        static[ON], static[ON_THE], static[CLOSE_THE] = one("on"), one("the"), one("the")
        static[POSITION] = _uniform(w.positions)
        static[RELATION] = _uniform(w.relations) if w.relations else _NOTHING
        static[REL_REF] = self.rel_ref
        static[PRED], static[ADV] = self.pred, self.adv
        static[CLOSE_VERB] = _uniform(w.closing_verbs)
        static[CLOSE_AND] = one("and")
        static[END] = one(EOS)
        static[DONE] = _NOTHING
        self.static = static
        # Next phase when it does not depend on the word; None where it does.
        nxt = [None] * _N_PHASES
        for a, b in [(START, SEE), (SEE, COUNT), (NOUN, OPENER_DOT), (OPENER_DOT, INTRO_A),
                     (INTRO_A, INTRO_SIZE), (ON, ON_THE), (ON_THE, POSITION), (POSITION, INTRO_DOT),
                     (RELATION, REL_REF), (REL_SHAPE, INTRO_DOT), (SENT_DOT, BODY),
                     (IS_COLOUR, SENT_DOT), (LOOKS_SIZE, SENT_DOT), (CLOSE_THE, CLOSE_SHAPE),
                     (CLOSE_SHAPE, CLOSE_VERB), (CLOSE_VERB, CLOSE_SIZE), (CLOSE_SIZE, CLOSE_AND),
                     (CLOSE_AND, CLOSE_COLOUR), (CLOSE_COLOUR, CLOSE_DOT), (CLOSE_DOT, END),
                     (END, DONE)]:
            nxt[a] = b
        self.next_phase = nxt

    # -- the distribution over the next word ------------------------------------
    def options(self, s):
        """(words, probs) the process can emit next from state ``s`` (probs > 0, sum 1)."""
        phase = s[0]
        st = self.static[phase]
        if st is not None:
            return st
        w = self.world
        n, objs, focus, n_events, _ = s[1]
        if phase == BODY:
            return self.body_open if n_events < w.max_events else self.body_closed
        if phase == NOUN:
            return self.shape_noun[n > 1]
        if phase == INTRO_COLOUR:
            used = {o[1] for o in objs}
            return _uniform([c for i, c in enumerate(w.colours) if i not in used])
        if phase == INTRO_SHAPE:
            used = {o[2] for o in objs}
            return _uniform([x for i, x in enumerate(w.shapes) if i not in used])
        if phase == REL_SHAPE:  # an object introduced before the current one
            return _uniform([w.shapes[o[2]] for o in objs[:-1]])
        if phase == SUBJ_SHAPE:
            return _uniform([w.shapes[o[2]] for o in objs])
        if phase == IS_COLOUR:
            return (w.colours[objs[focus][1]],), (1.0,)
        if phase == LOOKS_SIZE:
            return (w.sizes[objs[focus][0]],), (1.0,)
        if phase == CLOSE_SHAPE:
            return (w.shapes[objs[0][2]],), (1.0,)
        if phase == CLOSE_SIZE:
            return (w.sizes[objs[0][0]],), (1.0,)
        if phase == CLOSE_COLOUR:
            return (w.colours[objs[0][1]],), (1.0,)
        raise AssertionError(f"unknown phase {phase}")  # pragma: no cover

    # -- the state after a word ---------------------------------------------------
    def advance(self, s, word):
        """State after emitting ``word`` (one of ``options(s)``) in state ``s``."""
        phase, ctx = s
        nxt = self.next_phase[phase]
        if nxt is not None:
            return (nxt, ctx)
        n, objs, focus, n_events, pend = ctx
        if phase == BODY:
            if word == "finally":
                return (CLOSE_THE, ctx)
            return (PRED if word == "it" else SUBJ_SHAPE, (n, objs, focus, n_events + 1, pend))
        if phase == PRED:
            return (IS_COLOUR if word == "is" else LOOKS_SIZE if word == "looks" else ADV, ctx)
        if phase == ADV:
            return (BODY if word == "." else SENT_DOT, ctx)
        if phase == SUBJ_SHAPE:
            sid = self.shape_id[word]
            j = next(i for i, o in enumerate(objs) if o[2] == sid)
            return (PRED, (n, objs, j, n_events, pend))
        if phase == COUNT:
            return (NOUN, (self.count_words.index(word) + 1, objs, focus, n_events, pend))
        if phase == INTRO_SIZE:
            return (INTRO_COLOUR, (n, objs, focus, n_events, (self.size_id[word],)))
        if phase == INTRO_COLOUR:
            return (INTRO_SHAPE, (n, objs, focus, n_events, (pend[0], self.colour_id[word])))
        if phase == INTRO_SHAPE:
            objs = objs + ((pend[0], pend[1], self.shape_id[word]),)
            return (INTRO_VERB, (n, objs, focus, n_events, None))
        if phase == INTRO_VERB:
            return (ON if len(objs) == 1 else RELATION, ctx)
        if phase == REL_REF:
            return (INTRO_DOT if word == "it" else REL_SHAPE, ctx)
        if phase == INTRO_DOT:
            if len(objs) < n:
                return (INTRO_A, ctx)
            return (BODY, (n, objs, len(objs) - 1, n_events, pend))
        raise AssertionError(f"unknown phase {phase}")  # pragma: no cover


@lru_cache(maxsize=16)
def _process(world: World) -> _Process:
    return _Process(world)


def _get(world):
    if world is None:
        world = World()
    if not isinstance(world, World):
        raise TypeError(
            f"world must be a toyworld.World (or None for the default); got {type(world).__name__}"
        )
    return _process(world)


def _words_of(text) -> list[str]:
    if isinstance(text, str):
        return text.split()
    if isinstance(text, (list, tuple)) and all(isinstance(w, str) for w in text):
        return list(text)
    raise TypeError(f"text must be a string or a list of words; got {type(text).__name__}")


def _walk(proc: _Process, words):
    """Read ``words`` + <eos> through the process.

    Returns the probability of each of the n + 1 events, the phase before each word (n) and
    the state before each event followed by the final state (n + 2). Raises ValueError at
    the first word (or end of text) the process cannot produce.
    """
    probs, phases, states = [], [], []
    s = _START_STATE
    roles = _roles_map(proc.world)
    for i, word in enumerate(list(words) + [EOS]):
        opts, ps = proc.options(s)
        try:
            k = opts.index(word)
        except ValueError:
            shown = "the end of the text" if word == EOS else repr(word)
            before = " ".join(words[max(0, i - 6):i]) or "(start)"
            if word != EOS and word not in roles:
                raise ValueError(
                    f"word {i} {word!r} is not in the toyworld vocabulary; see toyworld.vocabulary(world)"
                ) from None
            allowed = ", ".join(opts) if opts else "nothing"
            raise ValueError(
                f"toyworld cannot produce {shown} at position {i} (after '... {before}'); "
                f"possible there: {allowed}"
            ) from None
        probs.append(ps[k])
        states.append(s)
        if word != EOS:
            phases.append(s[0])
            s = proc.advance(s, word)
    states.append(s)
    return probs, phases, states


# --- public API: vocabulary, next-word distribution, sampling --------------------

@lru_cache(maxsize=16)
def _vocabulary(world: World) -> tuple[str, ...]:
    w = world
    events = w.max_events > 0 and w.p_event > 0
    pronoun = w.p_pronoun > 0
    several = w.max_objects > 1
    words = ["we", "see", "shape"] + (["shapes"] if several else []) + list(NUMBER_WORDS[: w.max_objects])
    words += [".", "a"] + list(w.sizes) + list(w.colours) + list(w.shapes) + list(w.intro_verbs)
    words += ["on", "the"] + list(w.positions)
    if several:
        words += list(w.relations)
    if (several or events) and pronoun:
        words += ["it"]
    if events:
        if w.p_restate < 1:
            words += list(w.actions)
            if w.p_adverb > 0:
                words += list(w.adverbs)
        if w.p_restate > 0:
            words += ["is", "looks"]
    words += ["finally"] + list(w.closing_verbs) + ["and"]
    seen, out = set(), []
    for x in words:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return tuple(out)


def vocabulary(world: World | None = None) -> list[str]:
    """Every word the process of ``world`` can emit (``"<eos>"`` excluded), in a fixed order.

    Use it to build a word-level tokenizer whose losses are exactly per word.
    """
    return list(_vocabulary(_get(world).world))


@lru_cache(maxsize=16)
def _roles_map(world: World) -> dict:
    roles = dict(_FIXED_ROLES)
    roles.update({x: "number" for x in NUMBER_WORDS})
    for name, role in _LIST_ROLES.items():
        roles.update({x: role for x in getattr(world, name)})
    return roles


def next_word_distribution(prefix, world: World | None = None) -> dict[str, float]:
    """The exact distribution over the word after ``prefix`` (a string or a list of words).

    Returns ``{word: probability}`` over the words with probability > 0; ``"<eos>"`` is the
    end of the text. Raises ValueError if the prefix itself is impossible.
    """
    proc = _get(world)
    words = _words_of(prefix)
    s = _START_STATE
    for i, word in enumerate(words):
        opts, _ = proc.options(s)
        if word not in opts:
            _walk(proc, words[: i + 1])  # raises the explanatory error
        s = proc.advance(s, word)
    opts, ps = proc.options(s)
    return dict(zip(opts, ps))


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: sampling allocates many small tuples that it
    would otherwise scan again and again (about 2x slower); nothing here makes cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_CHUNK = 1 << 16  # uniforms drawn per numpy call; fixed so that streams do not depend on n


def _check_n_seed(n, seed):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")


def _sample(proc: _Process, n: int, seed: int, record: bool):
    """Draw ``n`` stories. Returns texts, log-probs and, with ``record``, per-story traces."""
    rng = np.random.default_rng(int(seed))
    buf, pos = rng.random(_CHUNK).tolist(), 0
    options, advance, log = proc.options, proc.advance, math.log
    texts, logps, traces = [], [], []
    for _ in range(n):
        s = _START_STATE
        words, lp = [], 0.0
        if record:
            probs, phases, states = [], [], []
        while True:
            opts, ps = options(s)
            if len(ps) == 1:
                k = 0
            else:
                if pos == _CHUNK:
                    buf, pos = rng.random(_CHUNK).tolist(), 0
                u = buf[pos]
                pos += 1
                k, acc, last = 0, ps[0], len(ps) - 1
                while u >= acc and k < last:
                    k += 1
                    acc += ps[k]
                lp += log(ps[k])
            word = opts[k]
            if record:
                probs.append(ps[k])
                states.append(s)
            if word == EOS:
                break
            if record:
                phases.append(s[0])
            words.append(word)
            s = advance(s, word)
        texts.append(" ".join(words))
        logps.append(lp)
        if record:
            states.append(advance(s, EOS))
            traces.append((words, probs, phases, states))
    return texts, logps, traces


def generate_texts(n: int, seed: int = 0, world: World | None = None, *, return_logprobs: bool = False):
    """Sample ``n`` stories: lowercase words and ``.`` separated by single spaces.

    Fully determined by ``seed`` (numpy PCG64); the first ``m`` stories of ``n`` are the
    stories of ``generate_texts(m, seed)``. With ``return_logprobs=True`` also returns the
    natural-log probability of each story as the sampler drew it (words and end of text).
    """
    _check_n_seed(n, seed)
    with _gc_paused():
        texts, logps, _ = _sample(_get(world), int(n), int(seed), record=False)
    return (texts, logps) if return_logprobs else texts


# --- scoring ---------------------------------------------------------------------

def word_nlls(text, world: World | None = None) -> list[float]:
    """Exact negative log-probability (nats) of each word given the words before it.

    ``text``: a story (string or list of words). Returns ``len(words) + 1`` floats; the
    last is the end-of-text event. Raises ValueError naming the first impossible word.
    """
    probs, _, _ = _walk(_get(world), _words_of(text))
    return [0.0 - math.log(p) for p in probs]


def true_nll(text, world: World | None = None) -> float:
    """Exact negative log-likelihood (nats) of a story: its words plus the end of text.

    This is the loss of the Bayes-optimal causal model. Raises ValueError for a text the
    process cannot produce (the message names the word and its position).
    """
    return float(sum(word_nlls(text, world)))


def bayes_floor(texts, world: World | None = None) -> float:
    """Mean exact NLL per predicted token, in nats: sum(true_nll) / sum(n_words + 1).

    The floor of a causal LM that reads ``[BOS] w1 ... wn [EOS]`` with a word-level
    tokenizer (one token per word) and predicts the n words and [EOS].
    """
    if isinstance(texts, str):
        texts = [texts]
    total, count = 0.0, 0
    for t in texts:
        nlls = word_nlls(t, world)
        total += sum(nlls)
        count += len(nlls)
    if count == 0:
        raise ValueError("bayes_floor needs at least one text")
    return total / count


def _kinds(proc: _Process, words, probs, phases, states) -> list[str]:
    """Position kinds from a story's trace (see the module docstring for the definitions)."""
    objs = states[-1][1][1]
    content = [i for i, ph in enumerate(phases) if ph in _CONTENT_PHASES]
    restated_colour, restated_size, named_shape = {0}, {0}, {0}  # the closing: main object
    shape_owner = {o[2]: j for j, o in enumerate(objs)}
    for i in content:
        ph = phases[i]
        if ph == IS_COLOUR:
            restated_colour.add(states[i][1][2])
        elif ph == LOOKS_SIZE:
            restated_size.add(states[i][1][2])
        elif ph == REL_SHAPE or ph == SUBJ_SHAPE:
            named_shape.add(shape_owner[proc.shape_id[words[i]]])
    kinds = ["free"] * len(words)
    for i in content:
        ph = phases[i]
        if probs[i] == 1.0:
            kind = "backward_copy"
        elif ph == COUNT:  # the introductions count the objects
            kind = "forward_copy"
        elif ph == INTRO_SIZE:
            kind = "forward_copy" if len(states[i][1][1]) in restated_size else "free"
        elif ph == INTRO_COLOUR or ph == INTRO_SHAPE:
            k = len(states[i][1][1])
            a = 1 if ph == INTRO_COLOUR else 2
            restated = restated_colour if a == 1 else named_shape
            # Another value fails if a later object uses it (values are distinct).
            others = set(range(len(proc.world.colours if a == 1 else proc.world.shapes)))
            others -= {o[a] for o in objs[: k + 1]}
            later = {o[a] for o in objs[k + 1:]}
            kind = "forward_copy" if k in restated or others <= later else "free"
        elif ph == REL_SHAPE:  # which earlier object: nothing later depends on it
            kind = "free"
        elif ph == SUBJ_SHAPE:
            # Another object fails iff a later restatement about the focus contradicts it;
            # the focus lasts until the next "the SHAPE" subject or the closing.
            j = states[i + 1][1][2]
            colour_said = size_said = False
            for t in range(i + 1, len(phases)):
                if phases[t] == BODY and words[t] != "it":
                    break
                colour_said |= phases[t] == IS_COLOUR
                size_said |= phases[t] == LOOKS_SIZE
            size_differs = all(o[0] != objs[j][0] for jj, o in enumerate(objs) if jj != j)
            kind = "forward_copy" if colour_said or (size_said and size_differs) else "free"
        else:  # pragma: no cover - restatements are forced, handled above
            raise AssertionError(f"content phase {ph} with probability {probs[i]}")
        kinds[i] = kind
    return kinds


def position_kinds(text, world: World | None = None) -> list[str]:
    """Kind of each word: ``"backward_copy"``, ``"forward_copy"`` or ``"free"``.

    backward_copy: a content word (number, size, colour, shape) with probability 1 given
    its prefix. forward_copy: a content word with probability < 1 given its prefix that the
    rest of the text determines (any other word there makes the text impossible). free:
    all other words, function words included. One entry per word (no entry for <eos>).
    """
    proc = _get(world)
    words = _words_of(text)
    probs, phases, states = _walk(proc, words)
    return _kinds(proc, words, probs, phases, states)


def word_roles(text, world: World | None = None) -> list[str]:
    """Grammatical role of each word: colour, shape, size, number, position, relation,
    action, adverb, verb, pronoun, determiner, preposition, noun, punct or other."""
    proc = _get(world)
    words = _words_of(text)
    _walk(proc, words)
    roles = _roles_map(proc.world)
    return [roles[x] for x in words]


def _attributes(proc: _Process, words, phases, states) -> dict:
    w = proc.world
    objs = states[-1][1][1]
    position = next(words[i] for i, ph in enumerate(phases) if ph == POSITION)
    main = objs[0]
    return {
        "colour": w.colours[main[1]],
        "shape": w.shapes[main[2]],
        "size": w.sizes[main[0]],
        "position": position,
        "n_objects": len(objs),
        "n_events": states[-1][1][3],
        "objects": [{"size": w.sizes[o[0]], "colour": w.colours[o[1]], "shape": w.shapes[o[2]]}
                    for o in objs],
    }


def story_attributes(text, world: World | None = None) -> dict:
    """Latent facts of a story: the main (first) object's colour, shape, size and
    position, n_objects, n_events and the list of objects (size, colour, shape)."""
    proc = _get(world)
    words = _words_of(text)
    _, phases, states = _walk(proc, words)
    return _attributes(proc, words, phases, states)


def generate_stories(n: int, seed: int = 0, world: World | None = None) -> list[dict]:
    """Sample ``n`` stories with their labels (the texts of ``generate_texts(n, seed)``).

    Each record: text, words, kinds, roles, word_nlls (n_words + 1, last = end of text),
    nll, and the :func:`story_attributes` (colour, shape, size, position, n_objects,
    n_events, objects).
    """
    _check_n_seed(n, seed)
    proc = _get(world)
    roles = _roles_map(proc.world)
    out = []
    with _gc_paused():
        texts, _, traces = _sample(proc, int(n), int(seed), record=True)
        for text, (words, probs, phases, states) in zip(texts, traces):
            nlls = [0.0 - math.log(p) for p in probs]
            rec = {"text": text, "words": words, "kinds": _kinds(proc, words, probs, phases, states),
                   "roles": [roles[x] for x in words], "word_nlls": nlls, "nll": float(sum(nlls))}
            rec.update(_attributes(proc, words, phases, states))
            out.append(rec)
    return out


def enumerate_texts(world: World | None = None, max_texts: int = 100_000) -> dict[str, float]:
    """Every story the process can produce, with its probability (depth-first search).

    Meant for ``World.tiny()``; raises ValueError when there are more than ``max_texts``.
    """
    proc = _get(world if world is not None else World.tiny())
    out: dict[str, float] = {}
    stack = [(_START_STATE, (), 1.0)]
    while stack:
        s, words, p = stack.pop()
        for word, q in zip(*proc.options(s)):
            if word == EOS:
                out[" ".join(words)] = p * q
                if len(out) > max_texts:
                    raise ValueError(
                        f"this world has more than max_texts={max_texts} stories; use World.tiny()"
                    )
            else:
                stack.append((proc.advance(s, word), words + (word,), p * q))
    return out


# --- datasets ----------------------------------------------------------------------

_SPLITS = ("train", "validation", "test")


def _split_seed(seed: int, split: str) -> int:
    """A fixed seed per split, distinct across splits, derived from ``seed``."""
    return int(np.random.SeedSequence([int(seed), _SPLITS.index(split), 7]).generate_state(1)[0])


def load_toyworld(n_train: int = 20000, n_validation: int = 1000, n_test: int = 1000, seed: int = 0,
                  world: World | None = None):
    """Toyworld stories as a ``datasets.DatasetDict`` with train / validation / test splits.

    Columns: text (str), colour, shape, size, position (str: the main object's), n_objects
    (int), kinds (list of str per word), roles (list of str per word), nll (float, exact,
    nats, words + end of text). Each split has its own seed derived from ``seed``, so a
    split does not change when the size of another does. Short stories can repeat across
    splits, as they would in a real language.
    """
    import datasets

    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    for name, n in sizes.items():
        _check_n_seed(n, seed)
    feats = datasets.Features({
        "text": datasets.Value("string"), "colour": datasets.Value("string"),
        "shape": datasets.Value("string"), "size": datasets.Value("string"),
        "position": datasets.Value("string"), "n_objects": datasets.Value("int32"),
        "kinds": datasets.Sequence(datasets.Value("string")),
        "roles": datasets.Sequence(datasets.Value("string")),
        "nll": datasets.Value("float64"),
    })
    splits = {}
    for name, n in sizes.items():
        recs = generate_stories(n, _split_seed(seed, name), world)
        cols = {k: [r[k] for r in recs] for k in feats}
        splits[name] = datasets.Dataset.from_dict(cols, features=feats)
    return datasets.DatasetDict(splits)


# --- scenes ------------------------------------------------------------------------

COLOUR_RGB = {
    "red": (220, 40, 40), "blue": (40, 90, 230), "green": (40, 170, 60), "yellow": (240, 215, 30),
    "purple": (150, 60, 200), "orange": (250, 140, 20), "pink": (250, 130, 200), "cyan": (30, 210, 220),
    "brown": (140, 85, 40), "white": (250, 250, 250), "gray": (150, 150, 150), "black": (0, 0, 0),
}
"""Fixed RGB value of each colour name a scene can use."""

BACKGROUND_RGB = (30, 30, 30)
SHAPES_DRAWN = ("circle", "square", "triangle", "diamond", "star", "cross")


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of a shape of "radius" r centred at (cx, cy) pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * r
    if shape == "cross":
        arm = 0.38 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        verts = np.stack([np.cos(angles), np.sin(angles)], 1) * 1.15 * r
    elif shape == "star":
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.2 * r, 0.5 * r)
        verts = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
    else:  # pragma: no cover - checked by the caller
        raise ValueError(shape)
    inside = np.zeros_like(dx, dtype=bool)
    vx, vy = verts[:, 0], verts[:, 1]
    for k in range(len(verts)):  # even-odd rule
        x1, y1, x2, y2 = vx[k], vy[k], vx[k - 1], vy[k - 1]
        crosses = (y1 > dy) != (y2 > dy)
        xint = x1 + (dy - y1) * (x2 - x1) / ((y2 - y1) if y2 != y1 else 1e-12)
        inside ^= crosses & (dx < xint)
    return inside


def _relation(a, b) -> str:
    """Spatial relation of object a to object b from their centres (image y grows down)."""
    dx, dy = a["position"][0] - b["position"][0], a["position"][1] - b["position"][1]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def generate_scenes(n: int, seed: int = 0, world: World | None = None, size: int = 32) -> dict:
    """Draw ``n`` scenes of 1 to 3 objects of the world, with captions.

    Returns a dict with ``images``: uint8 array (n, size, size, 3) on a plain
    ``BACKGROUND_RGB`` background, colours from ``COLOUR_RGB`` exactly (no anti-aliasing);
    ``captions``: list of str like "a big red circle left of a small blue square"
    (relations of the first object to the others); ``attributes``: per scene
    ``{"objects": [{"colour", "shape", "size", "position": (x, y), "radius"}]}``.
    Objects sit in distinct cells of a 2 x 2 grid, so they never overlap; bigger size
    words get bigger radii. Deterministic in ``seed``.
    """
    _check_n_seed(n, seed)
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels; got {size!r}")
    w = _get(world).world
    for c in w.colours:
        if c not in COLOUR_RGB:
            raise ValueError(
                f"colour {c!r} has no RGB value for scenes; use colours from {sorted(COLOUR_RGB)}"
            )
    for sh in w.shapes:
        if sh not in SHAPES_DRAWN:
            raise ValueError(f"shape {sh!r} cannot be drawn; use shapes from {SHAPES_DRAWN}")
    rng = np.random.default_rng(int(seed))
    max_obj = min(3, w.max_objects)
    cell = size / 2
    # Radii from 0.2 to 0.4 of a cell, increasing with the size word's rank.
    fr = np.linspace(0.2, 0.4, len(w.sizes)) if len(w.sizes) > 1 else np.array([0.3])
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions, attributes = [], []
    for t in range(n):
        img = np.empty((size, size, 3), dtype=np.uint8)
        img[:] = BACKGROUND_RGB
        k = int(rng.integers(1, max_obj + 1))
        colours = rng.choice(len(w.colours), size=k, replace=False)
        shapes = rng.choice(len(w.shapes), size=k, replace=False)
        sizes = rng.integers(0, len(w.sizes), size=k)
        cells = rng.choice(4, size=k, replace=False)
        jitter = rng.uniform(-1, 1, size=(k, 2))
        objects = []
        for i in range(k):
            r = float(fr[sizes[i]] * cell)
            slack = cell / 2 - 1.2 * r  # keep the shape inside its cell
            cx = (cells[i] % 2 + 0.5) * cell + jitter[i, 0] * max(slack, 0.0)
            cy = (cells[i] // 2 + 0.5) * cell + jitter[i, 1] * max(slack, 0.0)
            obj = {"colour": w.colours[colours[i]], "shape": w.shapes[shapes[i]], "size": w.sizes[sizes[i]],
                   "position": (float(cx), float(cy)), "radius": r}
            img[_shape_mask(obj["shape"], cx, cy, r, size)] = COLOUR_RGB[obj["colour"]]
            objects.append(obj)
        phrase = [f"a {o['size']} {o['colour']} {o['shape']}" for o in objects]
        caption = phrase[0]
        if k > 1:
            rels = [f"{_relation(objects[0], o)} {p}" for o, p in zip(objects[1:], phrase[1:])]
            caption += " " + " and ".join(rels)
        images[t] = img
        captions.append(caption)
        attributes.append({"objects": objects})
    return {"images": images, "captions": captions, "attributes": attributes}


def best_guess_accuracy(text, world: World | None = None) -> dict[str, list[float]]:
    """Per word of a story, the expected accuracy of the Bayes-optimal guess of that word.

    ``"left"``: from the words to its left only, max_w p(w | x_<i) (the ceiling of any
    causal LM; the end of text is not a guess). ``"both"``: from every other word of the
    story, max_w p(w | x_\\i), the ceiling of a cloze test hiding that word alone, with
    p(w | x_\\i) proportional to the exact probability of the story with w at i. One entry
    per word in each list. Raises ValueError for a story the process cannot produce.
    """
    proc = _get(world)
    words = _words_of(text)
    _walk(proc, words)  # an impossible story raises here, naming the word
    left, both = [], []
    for i in range(len(words)):
        options = next_word_distribution(words[:i], proc.world)
        left.append(max(p for w, p in options.items() if w != EOS))
        log_p = []
        for w in options:  # the words the left context allows; keep those the whole story allows
            if w == EOS:
                continue
            try:
                log_p.append(-true_nll(words[:i] + [w] + words[i + 1:], proc.world))
            except ValueError:
                pass
        top = max(log_p)
        both.append(1.0 / sum(math.exp(v - top) for v in log_p))  # max_w of the normalised p
    return {"left": left, "both": both}


# --- targets for probes and downstream heads (chapter 08) ----------------------------

ROLE_NAMES = ("colour", "shape", "size", "number", "position", "relation", "action", "adverb",
              "verb", "pronoun", "determiner", "preposition", "noun", "punct", "other")
"""Every role :func:`word_roles` can return; a role's index here is its class id."""

BIO_TAGS = ("O", "B-OBJ", "I-OBJ", "B-POS")
"""Tags of :func:`bio_tags`, in class-id order (as in CoNLL NER: B = begins, I = inside)."""

QA_KINDS = ("colour", "size", "shape", "position")
_INTRO_SLOT = {INTRO_SIZE: "size", INTRO_COLOUR: "colour", INTRO_SHAPE: "shape"}


def _intro_slots(phases, states) -> list[dict]:
    """Per object, in order of introduction: word index of its size, colour and shape."""
    objs: list[dict] = []
    for i, ph in enumerate(phases):
        if ph in _INTRO_SLOT:
            k = len(states[i][1][1])  # objects completed before this word = this object's index
            if k == len(objs):
                objs.append({})
            objs[k][_INTRO_SLOT[ph]] = i
    return objs


def sentence_targets(text, world: World | None = None) -> dict:
    """Story-level latents for sentence probes: ``n_objects`` (int), ``colour``, ``shape``,
    ``size``, ``position`` (the first object's), ``relation`` (the word relating the second
    object to an earlier one, ``"none"`` with one object) and ``n_events`` (int)."""
    proc = _get(world)
    words = _words_of(text)
    _, phases, states = _walk(proc, words)
    att = _attributes(proc, words, phases, states)
    relation = next((words[i] for i, ph in enumerate(phases) if ph == RELATION), "none")
    return {"n_objects": att["n_objects"], "colour": att["colour"], "shape": att["shape"],
            "size": att["size"], "position": att["position"], "relation": relation,
            "n_events": att["n_events"]}


def role_ids(text, world: World | None = None) -> list[int]:
    """:func:`word_roles` as class ids, indices into :data:`ROLE_NAMES`; one per word."""
    return [ROLE_NAMES.index(r) for r in word_roles(text, world)]


def bio_tags(text, world: World | None = None) -> list[str]:
    """NER-style BIO tags, one per word: an object mention is ``B-OBJ I-OBJ I-OBJ`` over an
    introduction's SIZE COLOUR SHAPE, and ``B-OBJ`` on the SHAPE of ``the SHAPE``; the
    position word is ``B-POS``; every other word (``it`` included) is ``O``.

    A restated ``is red`` or ``big and red`` is ``O``: the tag depends on the context, not
    on the word type alone, so a lookup table of words cannot solve the task.
    """
    proc = _get(world)
    words = _words_of(text)
    _, phases, _ = _walk(proc, words)
    tags = []
    for ph in phases:
        if ph == INTRO_SIZE:
            tags.append("B-OBJ")
        elif ph in (INTRO_COLOUR, INTRO_SHAPE):
            tags.append("I-OBJ")
        elif ph in (REL_SHAPE, SUBJ_SHAPE, CLOSE_SHAPE):
            tags.append("B-OBJ")
        elif ph == POSITION:
            tags.append("B-POS")
        else:
            tags.append("O")
    return tags


def qa_pairs(text, world: World | None = None) -> list[dict]:
    """Every question toyworld can ask about a story, with the answer key.

    Per object: "what colour is the SHAPE ?", "what size is the SHAPE ?", "what shape is the
    COLOUR one ?"; for the first object also "where is the SHAPE ?". Each dict: ``question``,
    ``kind`` (one of :data:`QA_KINDS`), ``answer`` (a word), ``answer_start`` /
    ``answer_end`` (word indices into the story, inclusive, the answer in the object's
    introduction) and ``evidence`` (word index of the word that links question and answer:
    the shape in that introduction, or its colour for a shape question).
    """
    proc = _get(world)
    words = _words_of(text)
    _, phases, states = _walk(proc, words)
    out = []
    position = next(i for i, ph in enumerate(phases) if ph == POSITION)
    for k, slots in enumerate(_intro_slots(phases, states)):
        shape, colour = words[slots["shape"]], words[slots["colour"]]
        asks = [("colour", f"what colour is the {shape} ?", slots["colour"], slots["shape"]),
                ("size", f"what size is the {shape} ?", slots["size"], slots["shape"]),
                ("shape", f"what shape is the {colour} one ?", slots["shape"], slots["colour"])]
        if k == 0:
            asks.append(("position", f"where is the {shape} ?", position, slots["shape"]))
        for kind, question, at, evidence in asks:
            out.append({"question": question, "kind": kind, "answer": words[at],
                        "answer_start": at, "answer_end": at, "evidence": evidence})
    return out


def generate_qa(n: int, seed: int = 0, world: World | None = None, kinds=QA_KINDS) -> list[dict]:
    """``n`` extractive-QA examples: the stories of ``generate_texts(n, seed)``, one question
    each, drawn uniformly from that story's :func:`qa_pairs` of the given ``kinds``.

    Each dict: ``context`` (the story), ``context_words`` and the :func:`qa_pairs` fields.
    Deterministic in ``seed``.
    """
    _check_n_seed(n, seed)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in QA_KINDS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {QA_KINDS}; got {kinds!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 8]))
    out = []
    for text in generate_texts(n, seed, world):
        pairs = [p for p in qa_pairs(text, world) if p["kind"] in kinds]
        pick = pairs[int(rng.integers(len(pairs)))]
        out.append({"context": text, "context_words": text.split(), **pick})
    return out


__all__ += ["ROLE_NAMES", "BIO_TAGS", "QA_KINDS", "sentence_targets", "role_ids", "bio_tags",
            "qa_pairs", "generate_qa"]
