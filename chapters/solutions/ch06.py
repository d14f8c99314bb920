"""Worked solutions for chapter 06's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import torch
import torch.nn.functional as F

SOLUTIONS = {}
WRONG = {}


# --- chapter 06 -------------------------------------------------------------

def nt_xent_by_hand(z1, z2, temperature):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D) on the unit sphere
    logits = z @ z.T / temperature  # (2N, 2N) cosines / tau
    logits.fill_diagonal_(float("-inf"))  # an anchor is not its own candidate
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])  # row i <-> row i +- N
    return F.cross_entropy(logits, positive)


def nt_xent_by_hand_wrong(z1, z2, temperature):  # the self-similarity stays among the candidates
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(z @ z.T / temperature, positive)


SOLUTIONS["nt_xent_by_hand"] = nt_xent_by_hand
WRONG["nt_xent_by_hand"] = nt_xent_by_hand_wrong


def alignment_uniformity_by_hand(x, y):
    x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    align = (x - y).norm(dim=1).pow(2).mean()
    i, j = torch.triu_indices(len(x), len(x), offset=1)  # every pair i < j once
    uniform = torch.exp(-2 * (x[i] - x[j]).pow(2).sum(1)).mean().log()
    return align, uniform


def alignment_uniformity_by_hand_wrong(x, y):  # forgets to put the rows on the unit sphere
    align = (x - y).norm(dim=1).pow(2).mean()
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    uniform = torch.exp(-2 * (x[i] - x[j]).pow(2).sum(1)).mean().log()
    return align, uniform


SOLUTIONS["alignment_uniformity_by_hand"] = alignment_uniformity_by_hand
WRONG["alignment_uniformity_by_hand"] = alignment_uniformity_by_hand_wrong

# (a) the learning rate, (b) the temperature (the pull-only loss has none), (c) a constant
# encoder is a perfect minimum of a loss without negatives, (d) too few training steps.
SOLUTIONS["pull_only_collapse"] = "c"
WRONG["pull_only_collapse"] = "a"

# (a) TF-IDF never sees a label (it counts words), (b) no evidence, and on toyworld the label is in the
# words, (c) the label is spelled out in the text, and SimCSE separates stories by any difference,
# (d) the loss did fall far below ln N (section 10).
SOLUTIONS["tfidf_vs_simcse"] = "c"
WRONG["tfidf_vs_simcse"] = "b"
