"""Worked solutions for chapter 08's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import torch

SOLUTIONS = {}
WRONG = {}


# --- chapter 08 -------------------------------------------------------------

def decode_span_by_hand(start_logits, end_logits, max_answer_len):
    B, L = start_logits.shape
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (B, L_start, L_end)
    s_idx, e_idx = torch.arange(L)[:, None], torch.arange(L)[None, :]
    allowed = (e_idx >= s_idx) & (e_idx < s_idx + max_answer_len)  # (L, L): start <= end, short enough
    best = scores.masked_fill(~allowed, float("-inf")).reshape(B, -1).argmax(1)
    return (best // L).tolist(), (best % L).tolist()


def decode_span_by_hand_wrong(start_logits, end_logits, max_answer_len):  # two independent argmaxes
    return start_logits.argmax(1).tolist(), end_logits.argmax(1).tolist()


SOLUTIONS["decode_span_by_hand"] = decode_span_by_hand
WRONG["decode_span_by_hand"] = decode_span_by_hand_wrong


def evidence_rank_by_hand(saliency, evidence, answer):
    competing = [s for i, s in enumerate(saliency) if i != answer]  # the answer word does not compete
    return 1 + sum(s > saliency[evidence] for s in competing)  # ties count in the evidence's favour


def evidence_rank_by_hand_wrong(saliency, evidence, answer):  # lets the answer word compete
    return 1 + sum(s > saliency[evidence] for s in saliency)


SOLUTIONS["evidence_rank_by_hand"] = evidence_rank_by_hand
WRONG["evidence_rank_by_hand"] = evidence_rank_by_hand_wrong

# (a) random networks carry a hidden pretraining, (b) the number is one word of the first sentence,
# and mean-pooled features of any network keep which words were read, (c) the probe memorises the test
# stories, (d) all stories have the same number of objects.
SOLUTIONS["n_objects_everywhere"] = "b"
WRONG["n_objects_everywhere"] = "c"

# (a) no network learned roles, (b) in toyworld a word's role is fixed by the word itself, so the control
# task (a fixed random label per word) is exactly as learnable: the probe could solve both by memorising
# words, (c) the control labels are drawn per token, not per word type, (d) a linear probe is too weak.
SOLUTIONS["role_selectivity"] = "b"
WRONG["role_selectivity"] = "a"
