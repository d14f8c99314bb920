"""Chain-of-thought with a causal LM: train on completions, sample chains, vote on answers.

No new loss: a model that reasons step by step is trained with the causal LM loss of
``clm`` on different *data* (the steps written out). What this module adds:

- ``encode_completions`` / ``completion_collator``: (prompt, completion) pairs as
  ``[BOS] prompt completion [EOS]``, with the prompt's labels set to -100 so that only the
  completion is scored (the prompt is given, not predicted; as in instruction tuning);
- ``complete``: greedy or sampled continuations of many prompts through ``clm.generate``,
  stopping at [EOS] (the end-of-reasoning token) or running a fixed budget without it;
- ``majority_vote`` and ``vote_accuracy``: self-consistency (Wang et al., 2022): sample k
  chains, keep the answer most of them reach.

Checking the steps themselves is task-specific: see ``ssledu.data.scratchpad.verify_trace``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import torch

from ssledu.conventions import IGNORE_INDEX, pad_batch
from ssledu.objectives import clm

__all__ = [
    "encode_completions",
    "completion_collator",
    "complete",
    "majority_vote",
    "vote_accuracy",
]


def encode_completions(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> list[dict]:
    """Token ids of ``[BOS] prompt completion [EOS]`` for each pair.

    Returns a list of dicts ``{"input_ids": list[int], "prompt_length": int}``;
    ``prompt_length`` counts [BOS] and the prompt (the positions not scored).
    """
    if isinstance(prompts, str) or isinstance(completions, str):
        raise TypeError("prompts and completions must be lists of strings; wrap a single one in a list")
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions; give one of each per example")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError("the tokenizer needs [BOS] and [EOS] tokens; build it with ssledu.data.tokenize")
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"] if completions else []
    return [{"input_ids": [bos] + p + c + [eos], "prompt_length": 1 + len(p)} for p, c in zip(p_ids, c_ids)]


def _completion_batch(examples, pad_id: int) -> dict:
    seqs = [e["input_ids"] for e in examples]
    batch = pad_batch(seqs, pad_id)  # input_ids, attention_mask (B, L), padded on the right
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)  # (B, L)
    for row, e in enumerate(examples):
        # label t is predicted from position t - 1: the first completion token is the first scored
        labels[row, : e["prompt_length"]] = IGNORE_INDEX
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


class completion_collator:  # noqa: N801 - used like a function: collate_fn=completion_collator(pad_id)
    """A ``collate_fn`` for ``ssledu.train.fit``: examples from ``encode_completions`` ->
    dict(input_ids, attention_mask, labels) of shape (B, L), labels = input_ids with -100 on
    [BOS] + prompt and on padding, unshifted (``GPT2LMHeadModel`` shifts inside)."""

    def __init__(self, pad_id: int):
        if not isinstance(pad_id, int) or isinstance(pad_id, bool) or pad_id < 0:
            raise ValueError(f"pad_id must be a non-negative token id; got {pad_id!r}")
        self.pad_id = pad_id

    def __call__(self, examples) -> dict:
        bad = [i for i, e in enumerate(examples) if not isinstance(e, dict) or "prompt_length" not in e]
        if bad:
            raise TypeError(
                f"example {bad[0]} is not a dict with 'input_ids' and 'prompt_length'; "
                "build the examples with encode_completions(tokenizer, prompts, completions)"
            )
        return _completion_batch(examples, self.pad_id)


@torch.no_grad()
def complete(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    num_samples: int = 1,
    greedy: bool = True,
    temperature: float = 1.0,
    stop_at_eos: bool = True,
    seed: int = 0,
    batch_size: int = 512,
) -> list[list[str]]:
    """Continue each prompt (read as ``[BOS] prompt``) ``num_samples`` times.

    greedy: argmax decoding (``num_samples`` must be 1); else sampling at ``temperature``
        from a generator seeded with ``seed`` (one stream for the whole call).
    stop_at_eos: True: a chain ends at [EOS] and its text is what came before it.
        False: every chain runs ``max_new_tokens`` tokens; the text is everything generated,
        special tokens dropped (what a reader sees when nothing marks the end).
    Prompts of equal length are generated together (``clm.generate`` takes no padding).
    Returns texts[i][j]: the j-th continuation of prompt i.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt in a list")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
    if greedy and num_samples > 1:
        raise ValueError(f"greedy decoding gives the same chain every time; use num_samples=1 or "
                         f"greedy=False to sample {num_samples} chains")
    eos = tokenizer.eos_token_id
    ids = [[tokenizer.bos_token_id] + p for p in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(ids):
        by_length.setdefault(len(p), []).append(i)
    generator = torch.Generator(device=clm._model_device(model)).manual_seed(seed)
    texts: list[list[str]] = [[] for _ in ids]
    rows = [(i, j) for length in sorted(by_length) for i in by_length[length] for j in range(num_samples)]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        # one call per prompt length inside the chunk
        groups: dict[int, list[tuple[int, int]]] = {}
        for i, j in chunk:
            groups.setdefault(len(ids[i]), []).append((i, j))
        for length, members in groups.items():
            prompt = torch.tensor([ids[i] for i, _ in members])  # (B, length)
            out = clm.generate(model, prompt, max_new_tokens, greedy=greedy, temperature=temperature,
                               eos_id=eos if stop_at_eos else None, generator=generator)  # (B, length + n)
            for (i, _), row in zip(members, out[:, length:].tolist()):
                if stop_at_eos and eos in row:
                    row = row[: row.index(eos)]
                texts[i].append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


def majority_vote(answers: Sequence) -> tuple[object, int]:
    """The most frequent answer and its count; None answers (chains without one) do not vote.

    A tie goes to the answer that appeared first (so greedy-first orderings stay stable).
    All None or empty -> (None, 0). Self-consistency, Wang et al. (2022).
    """
    if isinstance(answers, str):
        raise TypeError("answers must be a list of answers (one per chain), not one string")
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0
    best = max(counts.values())
    for a in answers:  # first appearance among the most frequent
        if a is not None and counts[a] == best:
            return a, best
    raise AssertionError("unreachable")


def vote_accuracy(answers: Sequence[Sequence], truths: Sequence, ks: Sequence[int], *,
                  draws: int = 20, seed: int = 0) -> dict[int, float]:
    """Accuracy of the majority vote over k chains, for each k in ``ks``.

    answers[i]: the n sampled answers of problem i (None for a chain without an answer);
    truths[i]: its true answer. For each problem and k, the vote is taken over ``draws``
    random subsets of k of its n chains (all n when k == n) and the hits are averaged,
    so the curve does not depend on which chains came first.
    Returns {k: mean accuracy over problems}.
    """
    answers = [list(a) for a in answers]
    if len(answers) != len(truths):
        raise ValueError(f"got answers for {len(answers)} problems but {len(truths)} truths")
    if not answers:
        raise ValueError("vote_accuracy needs at least one problem")
    n = min(len(a) for a in answers)
    for k in ks:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
            raise ValueError(f"every k must be an integer in [1, {n}] (the chains per problem); got {k!r}")
    rng = random.Random(seed)
    out = {}
    for k in ks:
        hits = 0.0
        for chains, truth in zip(answers, truths):
            if k == n:
                hits += majority_vote(chains[:n])[0] == truth
                continue
            hits += sum(majority_vote(rng.sample(chains[:n], k))[0] == truth for _ in range(draws)) / draws
        out[k] = hits / len(answers)
    return out
