"""Worked solutions for chapter 02's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import torch
import torch.nn.functional as F

SOLUTIONS = {}
WRONG = {}


# --- 1. 80/10/10 masking ------------------------------------------------------------

def mask_80_10_10(ids, seed, vocab_size, p=0.15):
    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(ids)
    selected = torch.bernoulli(torch.full(x.shape, p), generator=g).bool()
    labels = x.masked_fill(~selected, -100)
    to_mask = torch.bernoulli(torch.full(x.shape, 0.8), generator=g).bool() & selected
    corrupted = x.masked_fill(to_mask, 4)  # [MASK] = 4
    # 10 % of all selected = half of the 20 % that are not [MASK]
    to_random = torch.bernoulli(torch.full(x.shape, 0.5), generator=g).bool() & selected & ~to_mask
    random_ids = torch.randint(vocab_size, x.shape, generator=g)
    corrupted[to_random] = random_ids[to_random]
    return corrupted.tolist(), labels.tolist()


def mask_80_10_10_wrong(ids, seed, vocab_size, p=0.15):  # 0.1 instead of 0.1 / (1 - 0.8)
    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(ids)
    selected = torch.bernoulli(torch.full(x.shape, p), generator=g).bool()
    labels = x.masked_fill(~selected, -100)
    to_mask = torch.bernoulli(torch.full(x.shape, 0.8), generator=g).bool() & selected
    corrupted = x.masked_fill(to_mask, 4)
    to_random = torch.bernoulli(torch.full(x.shape, 0.1), generator=g).bool() & selected & ~to_mask
    random_ids = torch.randint(vocab_size, x.shape, generator=g)
    corrupted[to_random] = random_ids[to_random]
    return corrupted.tolist(), labels.tolist()


SOLUTIONS["mask_80_10_10"] = mask_80_10_10
WRONG["mask_80_10_10"] = mask_80_10_10_wrong


# --- 2. the MLM loss from logits ----------------------------------------------------

def mlm_loss_from_logits(logits, labels):
    logp = logits.log_softmax(dim=-1)  # (B, L, V)
    keep = labels != -100  # (B, L)
    picked = logp[keep].gather(1, labels[keep].unsqueeze(1)).squeeze(1)
    return -picked.mean().item()


def mlm_loss_from_logits_wrong(logits, labels):  # averages over every position
    V = logits.shape[-1]
    total = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="sum")
    return (total / labels.numel()).item()


SOLUTIONS["mlm_loss_from_logits"] = mlm_loss_from_logits
WRONG["mlm_loss_from_logits"] = mlm_loss_from_logits_wrong


# --- 3. whole-word masking ------------------------------------------------------------

def whole_word_positions(word_ids, seed, p=0.3):
    g = torch.Generator().manual_seed(seed)
    starts = [w is not None and (i == 0 or word_ids[i - 1] != w) for i, w in enumerate(word_ids)]
    probs = torch.tensor([p if s else 0.0 for s in starts])
    fired = torch.bernoulli(probs, generator=g).bool()
    chosen = {word_ids[i] for i in range(len(word_ids)) if fired[i]}
    return [i for i, w in enumerate(word_ids) if w is not None and w in chosen]


def whole_word_positions_wrong(word_ids, seed, p=0.3):  # token masking: pieces drawn one by one
    g = torch.Generator().manual_seed(seed)
    probs = torch.tensor([0.0 if w is None else p for w in word_ids])
    fired = torch.bernoulli(probs, generator=g).bool()
    return fired.nonzero().flatten().tolist()


SOLUTIONS["whole_word_positions"] = whole_word_positions
WRONG["whole_word_positions"] = whole_word_positions_wrong
