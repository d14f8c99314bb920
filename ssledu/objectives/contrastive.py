"""Contrastive learning: pull two views of one thing together, push the rest of the batch apart.

Losses (embeddings are L2-normalised inside, so every similarity is a cosine):

- ``nt_xent``: SimCLR's loss. Two views of N examples give 2N anchors; each anchor's positive
  is its other view, its negatives the other 2N - 2 embeddings (self-similarity is masked).
- ``info_nce``: the general form, one direction: N queries against their N keys (and any
  extra negatives: a MoCo queue, hard negatives). It is an (N + K)-way classification
  whose correct class is the query's own key.
- ``simcse_loss`` (unsupervised SimCSE: one direction, temperature 0.05),
  ``simcse_supervised_loss`` (entailment positives, contradiction hard negatives),
  ``moco_loss`` (own key vs. the queue).
- ``MoCoQueue`` (fixed-size FIFO of detached keys) and ``momentum_update``
  (θ_k ← m θ_k + (1 - m) θ_q), ``momentum_encoder`` (a frozen copy to start from).
- ``alignment`` and ``uniformity`` (Wang & Isola 2020) to read what a loss did.

Views (the augmentation is the whole method: it decides what counts as "the same"):

- Text, on token ids (B, L): ``random_masking``, ``random_deletion``, ``span_crop``,
  ``synonym_replacement`` (with a table; ``toyworld_synonyms`` defines one for toyworld,
  where some words are interchangeable by construction). Special tokens are never changed.
  For English, synonyms would come from WordNet, a lexical database that must be downloaded
  (``nltk.download("wordnet")``); back-translation (English -> French -> English) needs a
  trained translation model in each direction, which is why neither is offline here.
- ``dropout_views``: SimCSE's augmentation: the same input through the model twice in train
  mode; only the dropout masks differ.
- Images, 8x8 digits (B, 8, 8) or (B, 1, 8, 8): ``random_shift``, ``random_rotation``,
  ``gaussian_noise``, ``cutout`` and ``augment_digits`` (all four, any one switched off).

Every random function takes a ``torch.Generator``: same seed, same views.

Sources: Chen et al. 2020, "SimCLR" (NT-Xent, tau 0.5 on CIFAR); Oord et al. 2018, "CPC"
(InfoNCE); Gao et al. 2021, "SimCSE" (dropout views, tau 0.05, supervised hard negatives);
He et al. 2020, "MoCo" (queue, m 0.999, tau 0.07); Wang & Isola 2020, "Understanding
Contrastive Representation Learning through Alignment and Uniformity"; Wei & Zou 2019, "EDA"
(deletion, synonym replacement); DeVries & Taylor 2017 (cut-out).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssledu.conventions import check_ids

__all__ = [
    "REDUCTIONS",
    "nt_xent",
    "info_nce",
    "simcse_loss",
    "simcse_supervised_loss",
    "moco_loss",
    "MoCoQueue",
    "momentum_encoder",
    "momentum_update",
    "alignment",
    "uniformity",
    "random_masking",
    "random_deletion",
    "span_crop",
    "synonym_replacement",
    "toyworld_synonyms",
    "synonym_ids",
    "dropout_views",
    "random_shift",
    "random_rotation",
    "gaussian_noise",
    "cutout",
    "augment_digits",
]

# "mean": over all anchors (lightly's and pytorch-metric-learning's NTXentLoss);
# "simclr": mean of each direction, the two summed (SimCLR's own code: 2 x "mean").
REDUCTIONS = ("mean", "simclr", "sum", "none")


# --------------------------------------------------------------------------- checks


def _check_embeddings(name: str, x, *, min_rows: int = 1) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of embeddings (N, D); got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be float embeddings (N, D); got dtype {x.dtype}. Encode the inputs "
            "first (token ids go into the encoder, not into the loss)"
        )
    if x.dim() != 2:
        raise ValueError(
            f"{name} must have shape (N, D): one embedding per row; got {tuple(x.shape)}. "
            "Pool token states to one vector per example first (e.g. the [CLS] position)"
        )
    if x.shape[0] < min_rows:
        raise ValueError(
            f"{name} has batch size {x.shape[0]}, but a contrastive loss needs at least "
            f"{min_rows} examples: the other examples of the batch are the negatives. "
            "Use a larger batch (or add negatives, e.g. a MoCoQueue)"
        )
    return x


def _check_same_shape(a_name, a, b_name, b) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape (N, D), row i of one being the "
            f"positive of row i of the other; got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        temperature > 0 and math.isfinite(temperature)
    ):
        raise ValueError(
            f"temperature must be a number > 0 (logits are similarities / temperature); got "
            f"{temperature!r}. Common values: 0.5 (SimCLR, CIFAR), 0.1, 0.07 (MoCo), 0.05 (SimCSE)"
        )
    return float(temperature)


def _check_probability(name: str, p, *, upper_open: bool = False) -> float:
    ok = not isinstance(p, bool) and isinstance(p, (int, float)) and 0.0 <= p <= 1.0
    if ok and upper_open and p >= 1.0:
        ok = False
    if not ok:
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be a probability in {interval}; got {p!r}")
    return float(p)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 or float64 as given; half precision widened (exp of logits / 0.05 overflows it)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _reduce(losses: torch.Tensor, reduction: str, n_directions: int) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "simclr":
        return losses.mean() * n_directions
    if reduction == "sum":
        return losses.sum()
    return losses


def _check_reduction(reduction) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


# --------------------------------------------------------------------------- losses


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, *,
            reduction: str = "mean") -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over 2N anchors.

    z1, z2: (N, D) embeddings of two views; row i of z1 and row i of z2 are a positive pair.
    Both are L2-normalised; the (2N, 2N) cosine matrix divided by ``temperature`` has its
    diagonal (self-similarity) masked out, and each of the 2N rows is a cross-entropy whose
    target is the other view: 1 positive, 2N - 2 negatives.
    reduction: "mean" over the 2N anchors (lightly, pytorch-metric-learning), "simclr"
    (SimCLR's code sums the two directions' means: 2 x "mean"), "sum", or "none" (2N,)
    with the z1 anchors first. Default tau 0.5 from SimCLR on CIFAR-10 (0.1 on ImageNet).
    """
    tau = _check_temperature(temperature)
    _check_reduction(reduction)
    _check_embeddings("z1", z1, min_rows=2)
    _check_embeddings("z2", z2)
    _check_same_shape("z1", z1, "z2", z2)
    n = z1.shape[0]
    z = F.normalize(_wide(torch.cat([z1, z2])), dim=1)  # (2N, D)
    logits = z @ z.T / tau  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is not its own negative
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # (2N,)
    losses = F.cross_entropy(logits, target, reduction="none")  # (2N,)
    return _reduce(losses, reduction, 2)


def info_nce(query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor | None = None, *,
             temperature: float = 0.07, in_batch: bool = True, reduction: str = "mean") -> torch.Tensor:
    """InfoNCE, one direction: classify each query's own key among the candidates.

    query, key: (N, D); key[i] is the positive of query[i]. negatives: optional (K, D) extra
    negatives shared by all queries (a MoCo queue, hard negatives). All are L2-normalised.
    in_batch=True: candidates are the N keys then the K negatives, logits (N, N + K),
    target i (SimCSE, CLIP's one direction). in_batch=False: candidates are the own key then
    the K negatives, logits (N, 1 + K), target 0 (MoCo).
    reduction: "mean", "sum" or "none" (N,). Returns the loss (nats). Default tau 0.07 (MoCo).
    With C candidates, log C - loss (in expectation) is a lower bound on the mutual
    information between the two views (Oord et al. 2018); the bound can never exceed
    log C, one reason why more negatives help.
    """
    tau = _check_temperature(temperature)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of mean, sum, none; got {reduction!r}")
    _check_embeddings("query", query)
    _check_embeddings("key", key)
    _check_same_shape("query", query, "key", key)
    n = query.shape[0]
    if negatives is not None:
        _check_embeddings("negatives", negatives)
        if negatives.shape[1] != query.shape[1]:
            raise ValueError(
                f"negatives must have the embedding size of query, D={query.shape[1]}; got "
                f"shape {tuple(negatives.shape)}"
            )
    if in_batch and n < 2 and negatives is None:
        raise ValueError(
            "batch size 1 leaves a query no negative (the other keys of the batch are its "
            "negatives): use a batch of at least 2, or pass negatives (e.g. a MoCoQueue)"
        )
    if not in_batch and negatives is None:
        raise ValueError("in_batch=False needs negatives (K, D), e.g. queue.negatives of a MoCoQueue")
    q = F.normalize(_wide(query), dim=1)  # (N, D)
    k = F.normalize(_wide(key), dim=1)  # (N, D)
    if in_batch:
        logits = q @ k.T  # (N, N)
        target = torch.arange(n, device=q.device)
    else:
        logits = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
        target = torch.zeros(n, dtype=torch.long, device=q.device)
    if negatives is not None:
        neg = F.normalize(negatives.to(q), dim=1)  # (K, D)
        logits = torch.cat([logits, q @ neg.T], dim=1)  # (N, N + K) or (N, 1 + K)
    return F.cross_entropy(logits / tau, target, reduction=reduction)


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Unsupervised SimCSE: the same batch encoded twice (different dropout), one direction.

    z1, z2: (N, D) sentence embeddings from two forward passes (see ``dropout_views``).
    logits cos(z1_i, z2_j) / 0.05, (N, N), target i; mean over N. Gao et al. 2021.
    """
    return info_nce(z1, z2, temperature=temperature)


def simcse_supervised_loss(anchor: torch.Tensor, positive: torch.Tensor, hard_negative: torch.Tensor,
                           temperature: float = 0.05) -> torch.Tensor:
    """Supervised SimCSE: entailment positives, contradiction hard negatives.

    anchor, positive, hard_negative: (N, D); hard_negative[i] is a sentence that looks like
    anchor[i] but means something else. Each anchor picks its positive among the N positives
    and the N hard negatives: logits (N, 2N), target i. Gao et al. 2021, tau 0.05.
    """
    _check_embeddings("hard_negative", hard_negative)
    _check_same_shape("anchor", anchor, "hard_negative", hard_negative)
    return info_nce(anchor, positive, hard_negative, temperature=temperature)


def moco_loss(query: torch.Tensor, key: torch.Tensor, queue: "MoCoQueue",
              temperature: float = 0.07) -> torch.Tensor:
    """MoCo's loss: each query against its own key and the K queued keys, logits (N, 1 + K).

    query (N, D) from the query encoder (with gradient); key (N, D) from the momentum encoder
    (compute it under ``torch.no_grad()``). Enqueue ``key`` AFTER this loss, so that a key
    is never its own query's negative. He et al. 2020, tau 0.07.
    """
    if not isinstance(queue, MoCoQueue):
        raise TypeError(f"queue must be a MoCoQueue; got {type(queue).__name__}")
    return info_nce(query, key, queue.negatives, temperature=temperature, in_batch=False)


# --------------------------------------------------------------------------- MoCo pieces


class MoCoQueue(nn.Module):
    """A fixed-size first-in-first-out queue of keys: MoCo's dictionary of negatives.

    size: K, the number of negatives (65536 in MoCo; a few hundred suffice for digits).
    dim: D, the embedding size. Starts full of random unit vectors (as MoCo does), drawn
    from ``generator``. ``negatives`` is the (K, D) buffer (no gradient, ever);
    ``enqueue(keys)`` detaches and normalises keys (N, D) and overwrites the oldest N rows,
    wrapping around, so any batch size up to K works. A buffer, so ``.to(device)`` and
    ``state_dict()`` carry it.
    """

    def __init__(self, dim: int, size: int, *, generator: torch.Generator | None = None):
        super().__init__()
        for name, v in (("dim", dim), ("size", size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MoCoQueue {name} must be a positive integer; got {v!r}")
        dev = generator.device if generator is not None else torch.device("cpu")
        keys = torch.randn(size, dim, generator=generator, device=dev)  # (K, D)
        self.register_buffer("keys", F.normalize(keys, dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next row to overwrite

    @property
    def negatives(self) -> torch.Tensor:
        """(K, D) the queued keys."""
        return self.keys

    def __len__(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys (N, D), detached and normalised, over the N oldest rows (N <= K)."""
        _check_embeddings("keys", keys)
        size, dim = self.keys.shape
        if keys.shape[1] != dim:
            raise ValueError(f"keys must have D={dim} columns like the queue; got {tuple(keys.shape)}")
        if keys.shape[0] > size:
            raise ValueError(
                f"a batch of {keys.shape[0]} keys does not fit a queue of size {size}; "
                f"use a queue of at least {keys.shape[0]} (MoCo's is many batches long)"
            )
        rows = (self.ptr + torch.arange(keys.shape[0], device=self.keys.device)) % size  # (N,)
        # Detached: a key is a fixed target, the gradient of a loss must not reach it.
        self.keys[rows] = F.normalize(keys.detach().float(), dim=1).to(self.keys)
        self.ptr.fill_(int((self.ptr + keys.shape[0]) % size))


def momentum_encoder(encoder: nn.Module) -> nn.Module:
    """A copy of ``encoder`` with gradients switched off: MoCo's key encoder at step 0."""
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module; got {type(encoder).__name__}")
    key_encoder = copy.deepcopy(encoder)
    for p in key_encoder.parameters():
        p.requires_grad_(False)
    return key_encoder


@torch.no_grad()
def momentum_update(key_encoder: nn.Module, query_encoder: nn.Module, momentum: float = 0.999) -> None:
    """θ_k ← m θ_k + (1 - m) θ_q for every parameter, in place, without gradient.

    The key encoder follows the query encoder slowly, so that keys queued a few steps ago
    still come from nearly the same function. m 0.999 from He et al. 2020 (the same
    update as lightly's ``update_momentum``); m = 0 copies, m = 1 freezes.
    """
    m = _check_probability("momentum", momentum)
    pk, pq = list(key_encoder.parameters()), list(query_encoder.parameters())
    shapes_k, shapes_q = [tuple(p.shape) for p in pk], [tuple(p.shape) for p in pq]
    if shapes_k != shapes_q:
        raise ValueError(
            "key_encoder and query_encoder must have the same parameters (shapes differ: "
            f"{len(pk)} vs {len(pq)} tensors); build the key encoder with momentum_encoder(query_encoder)"
        )
    for k, q in zip(pk, pq):
        k.mul_(m).add_(q.detach(), alpha=1.0 - m)


# --------------------------------------------------------------------------- diagnostics


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean ||x_i - y_i||^alpha over positive pairs of L2-normalised rows (0 = perfectly aligned).

    x, y: (N, D), normalised inside. alpha 2 from Wang & Isola 2020. Range [0, 2^alpha].
    """
    _check_embeddings("x", x)
    _check_embeddings("y", y)
    _check_same_shape("x", x, "y", y)
    x, y = F.normalize(_wide(x), dim=1), F.normalize(_wide(y), dim=1)
    return (x - y).norm(dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log mean exp(-t ||x_i - x_j||^2) over all pairs i < j of L2-normalised rows.

    x: (N, D), N >= 2, normalised inside. Lower = more spread over the sphere; all rows
    equal gives 0 (collapse). t 2 from Wang & Isola 2020.
    """
    _check_embeddings("x", x, min_rows=2)
    x = F.normalize(_wide(x), dim=1)
    sq = torch.pdist(x).pow(2)  # (N(N-1)/2,)
    return sq.mul(-t).exp().mean().log()


# --------------------------------------------------------------------------- text views


def _default_special_ids() -> tuple[int, ...]:
    from ssledu.data.tokenize import SPECIAL_IDS

    return tuple(SPECIAL_IDS.values())


def _text_batch(input_ids, attention_mask, special_ids, pad_id):
    """(B, L) ids, (B, L) bool real-token mask, (B, L) bool content mask, single-row flag."""
    ids = check_ids(input_ids, what="input_ids")
    single = ids.dim() == 1
    if single:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, L) or (L,); got {tuple(ids.shape)}")
    if attention_mask is None:
        real = ids != pad_id
    else:
        real = torch.as_tensor(attention_mask).to(ids.device).bool()
        if single and real.dim() == 1:
            real = real.unsqueeze(0)
        if real.shape != ids.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(real.shape)} but input_ids has {tuple(ids.shape)}"
            )
    specials = _default_special_ids() if special_ids is None else tuple(int(i) for i in special_ids)
    is_special = torch.isin(ids, torch.tensor(specials, dtype=torch.long, device=ids.device))
    return ids, real, real & ~is_special, single


def _rand(shape, generator, device) -> torch.Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=dev).to(device)


def _out(ids, real, single) -> dict:
    mask = real.long()
    if single:
        return {"input_ids": ids.squeeze(0), "attention_mask": mask.squeeze(0)}
    return {"input_ids": ids, "attention_mask": mask}


def _compact(ids, keep, pad_id) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the kept tokens of each row to its front, in order; pad the rest. Shapes kept."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # (B, L) kept first
    new_keep = keep.gather(1, order)
    new_ids = ids.gather(1, order).masked_fill(~new_keep, pad_id)
    return new_ids, new_keep


def random_masking(input_ids, p: float = 0.15, *, mask_id: int = 4, attention_mask=None,
                   special_ids: Sequence[int] | None = None, pad_id: int = 0,
                   generator: torch.Generator | None = None) -> dict:
    """Replace each content token by ``mask_id`` with probability p (a text view).

    input_ids: (B, L) or (L,) long. Special tokens (default: ids 0..6 of
    ``ssledu.data.tokenize``) and padding (``attention_mask`` 0, or ``pad_id`` when no mask
    is given) are never touched. Returns {"input_ids", "attention_mask"} of the input's shape.
    mask_id 4 is [MASK] in the course's tokenizers. p 0.15 after BERT.
    """
    p = _check_probability("p", p)
    ids, real, content, single = _text_batch(input_ids, attention_mask, special_ids, pad_id)
    hit = (_rand(ids.shape, generator, ids.device) < p) & content  # (B, L)
    return _out(ids.masked_fill(hit, int(mask_id)), real, single)


def random_deletion(input_ids, p: float = 0.1, *, attention_mask=None,
                    special_ids: Sequence[int] | None = None, pad_id: int = 0,
                    generator: torch.Generator | None = None) -> dict:
    """Delete each content token with probability p; close the gaps, pad at the end.

    input_ids: (B, L) or (L,). Every row keeps at least one content token (the one with the
    highest draw when all would go). Special tokens stay, in order. Shapes kept; the
    returned ``attention_mask`` marks the shorter rows. p 0.1 from EDA (Wei & Zou 2019).
    """
    p = _check_probability("p", p, upper_open=True)
    ids, real, content, single = _text_batch(input_ids, attention_mask, special_ids, pad_id)
    draws = _rand(ids.shape, generator, ids.device)  # (B, L)
    deleted = (draws < p) & content
    emptied = ~(content & ~deleted).any(dim=1) & content.any(dim=1)  # (B,) rows left empty
    if emptied.any():
        rescue = draws.masked_fill(~content, -1.0).argmax(dim=1)  # (B,)
        back = F.one_hot(rescue, ids.shape[1]).bool() & emptied[:, None]
        deleted &= ~back
    new_ids, new_real = _compact(ids, real & ~deleted, pad_id)
    return _out(new_ids, new_real, single)


def span_crop(input_ids, min_fraction: float = 0.5, max_fraction: float = 1.0, *, attention_mask=None,
              special_ids: Sequence[int] | None = None, pad_id: int = 0,
              generator: torch.Generator | None = None) -> dict:
    """Keep one contiguous span of each row's content tokens (and all special tokens).

    Per row with n content tokens: a length uniform in
    [ceil(min_fraction n), ceil(max_fraction n)] (at least 1), then a uniform start. The
    text analogue of SimCLR's random crop; two crops of one text are a positive pair.
    input_ids: (B, L) or (L,). Returns {"input_ids", "attention_mask"}, shapes kept.
    """
    lo = _check_probability("min_fraction", min_fraction)
    hi = _check_probability("max_fraction", max_fraction)
    if lo > hi or hi == 0:
        raise ValueError(
            f"need 0 <= min_fraction <= max_fraction <= 1 and max_fraction > 0; got "
            f"{min_fraction!r} and {max_fraction!r}"
        )
    ids, real, content, single = _text_batch(input_ids, attention_mask, special_ids, pad_id)
    n = content.sum(dim=1)  # (B,) content tokens per row
    shortest = torch.clamp(torch.ceil(lo * n), min=1)
    longest = torch.clamp(torch.ceil(hi * n), min=1)
    u_len, u_start = _rand((2, ids.shape[0]), generator, ids.device)
    length = torch.minimum(shortest + torch.floor(u_len * (longest - shortest + 1)), longest)
    start = torch.floor(u_start * (n - length + 1).clamp(min=1))  # (B,)
    rank = torch.cumsum(content.long(), dim=1) - 1  # (B, L) index among the row's content
    in_span = content & (rank >= start[:, None]) & (rank < (start + length)[:, None])
    new_ids, new_real = _compact(ids, (real & ~content) | in_span, pad_id)
    return _out(new_ids, new_real, single)


def synonym_replacement(input_ids, table: Mapping[int, Sequence[int]], p: float = 0.3, *,
                        attention_mask=None, special_ids: Sequence[int] | None = None, pad_id: int = 0,
                        generator: torch.Generator | None = None) -> dict:
    """Replace each token that has synonyms, with probability p, by one of them (uniform).

    table: {token id: [synonym ids]} (see ``synonym_ids``); tokens without an entry, special
    tokens and padding stay. input_ids: (B, L) or (L,). Returns {"input_ids",
    "attention_mask"}. EDA (Wei & Zou 2019) draws English synonyms from WordNet, which must
    be downloaded; toyworld defines its own table (``toyworld_synonyms``).
    """
    p = _check_probability("p", p)
    if not isinstance(table, Mapping):
        raise TypeError(
            f"table must be a dict {{token id: [synonym ids]}}; got {type(table).__name__}. "
            "Build one with synonym_ids(tokenizer, toyworld_synonyms())"
        )
    ids, real, content, single = _text_batch(input_ids, attention_mask, special_ids, pad_id)
    table = {int(k): [int(s) for s in v if int(s) != int(k)] for k, v in table.items()}
    table = {k: v for k, v in table.items() if v}
    if not table:
        return _out(ids.clone(), real, single)
    size = max(max(table), int(ids.max())) + 1
    width = max(len(v) for v in table.values())
    options = torch.zeros(size, width, dtype=torch.long)  # (V, S) synonyms, padded
    count = torch.zeros(size, dtype=torch.long)  # (V,) number of synonyms of each id
    for k, v in table.items():
        options[k, : len(v)] = torch.tensor(v)
        count[k] = len(v)
    options, count = options.to(ids.device), count.to(ids.device)
    u_hit, u_pick = _rand((2, *ids.shape), generator, ids.device)  # (2, B, L)
    n_options = count[ids]  # (B, L)
    hit = content & (n_options > 0) & (u_hit < p)
    pick = torch.floor(u_pick * n_options.clamp(min=1)).long().clamp(max=width - 1)  # (B, L)
    replaced = options[ids, pick]  # (B, L)
    return _out(torch.where(hit, replaced, ids), real, single)


def toyworld_synonyms(world=None) -> dict[str, tuple[str, ...]]:
    """Interchangeable words of a toyworld: {word: (its synonyms, ...)}.

    Two words are synonyms when they fill the same slot of the grammar and no latent fact
    of the story depends on which one was drawn: the intro verbs (``sits``/``rests``) and
    the closing verbs (``was``/``looked``). A word the grammar also uses elsewhere (``is``
    in "it is blue") is left out: replacing it there would break the sentence. Swapping
    synonyms keeps ``toyworld.story_attributes`` and a finite ``true_nll``.
    """
    from ssledu.data import toyworld

    w = world if world is not None else toyworld.World()
    if not isinstance(w, toyworld.World):
        raise TypeError(f"world must be a toyworld.World or None; got {type(w).__name__}")
    grammar = {"we", "see", "shape", "shapes", ".", "a", "the", "on", "it", "is", "looks",
               "finally", "and", *toyworld.NUMBER_WORDS}
    table = {}
    for group in (w.intro_verbs, w.closing_verbs):
        words = [x for x in group if x not in grammar]
        for x in words:
            others = tuple(y for y in words if y != x)
            if others:
                table[x] = others
    return table


def synonym_ids(tokenizer, synonyms: Mapping[str, Sequence[str]]) -> dict[int, list[int]]:
    """A word-level synonym table turned into token ids for ``synonym_replacement``.

    Each word must be ONE token of ``tokenizer`` (a "word" tokenizer trained on
    ``toyworld.vocabulary()`` has every toyworld word); otherwise ValueError names the words.
    """
    vocab = tokenizer.get_vocab()
    missing = sorted({w for k, v in synonyms.items() for w in (k, *v) if w not in vocab})
    if missing:
        raise ValueError(
            f"words not single tokens of this tokenizer: {', '.join(missing)}; train a 'word' "
            "tokenizer that includes them (e.g. on toyworld.vocabulary()) or drop them from the table"
        )
    return {vocab[k]: [vocab[s] for s in v] for k, v in synonyms.items()}


def _first_tensor(out) -> torch.Tensor:
    """The first tensor of a model output: itself, a dict's (ModelOutput's) first value, a tuple's first."""
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, Mapping) else out
    return next(v for v in values if isinstance(v, torch.Tensor))


def dropout_views(model: nn.Module, *args, seed: int | None = None, **kwargs) -> tuple:
    """SimCSE's augmentation: ``model(*args, **kwargs)`` twice in train mode; only dropout differs.

    Returns (out1, out2), the two outputs as the model returns them. The model's training
    flag is restored afterwards. seed: fixes the two dropout masks (global RNG forked, so the
    caller's random stream is untouched). Raises ValueError when the two outputs are equal
    (no dropout is active: build the model with dropout 0.1, as SimCSE does).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            out1 = model(*args, **kwargs)
            out2 = model(*args, **kwargs)
    finally:
        model.train(was_training)
    if torch.equal(_first_tensor(out1), _first_tensor(out2)):
        raise ValueError(
            "the two forward passes gave identical outputs: the model has no active dropout, so "
            "the two views are the same and the loss teaches nothing; build it with dropout "
            "(SimCSE uses 0.1, e.g. hidden_dropout_prob=0.1)"
        )
    return out1, out2


# --------------------------------------------------------------------------- image views


def _images(images) -> tuple[torch.Tensor, bool]:
    """(B, 1, H, W) float and whether the input was (B, H, W)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor (B, 8, 8) or (B, 1, 8, 8); got {type(images).__name__}. "
            "Convert with torch.as_tensor(x, dtype=torch.float32)"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"images must be float pixels in [0, 1]; got dtype {images.dtype}. Divide ink counts "
            "by 16 (load_digits_images does) and convert with .float()"
        )
    if images.dim() == 3:
        return images.unsqueeze(1), True
    if images.dim() == 4 and images.shape[1] == 1:
        return images, False
    raise ValueError(f"images must have shape (B, H, W) or (B, 1, H, W); got {tuple(images.shape)}")


def _back(x, squeeze):
    return x.squeeze(1) if squeeze else x


def random_shift(images, max_shift: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by a whole number of pixels in [-max_shift, max_shift] on each axis.

    Zero fill: pad-and-crop, the 8x8 version of SimCLR's random crop (1 px = 1/8 of the digit).
    images: (B, H, W) or (B, 1, H, W) float; returns the same shape and dtype.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer (pixels); got {max_shift!r}")
    x, squeeze = _images(images)
    B, _, H, W = x.shape
    if max_shift == 0:
        return images.clone()
    dev = generator.device if generator is not None else torch.device("cpu")
    shifts = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=generator, device=dev).to(x.device)
    padded = F.pad(x, (max_shift,) * 4)  # (B, 1, H + 2s, W + 2s)
    rows = (torch.arange(H, device=x.device)[None] + max_shift - shifts[:, :1])  # (B, H)
    cols = (torch.arange(W, device=x.device)[None] + max_shift - shifts[:, 1:])  # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None]  # (B, 1, 1)
    out = padded[batch, 0, rows[:, :, None], cols[:, None, :]]  # (B, H, W)
    return _back(out.unsqueeze(1), squeeze)


def random_rotation(images, max_degrees: float = 15.0, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each image about its centre by an angle uniform in [-max_degrees, max_degrees].

    Bilinear sampling, zero outside. Small angles only: a 6 turned 180 degrees is a 9.
    images: (B, H, W) or (B, 1, H, W) float; returns the same shape and dtype.
    """
    if isinstance(max_degrees, bool) or not isinstance(max_degrees, (int, float)) or not 0 <= max_degrees <= 180:
        raise ValueError(f"max_degrees must be in [0, 180]; got {max_degrees!r}")
    x, squeeze = _images(images)
    B = x.shape[0]
    angle = (_rand((B,), generator, x.device) * 2 - 1) * math.radians(max_degrees)  # (B,)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _back(out, squeeze)


def gaussian_noise(images, std: float = 0.05, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, std^2) noise to every pixel and clip to [0, 1]. Same shape and dtype."""
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std < math.inf:
        raise ValueError(f"std must be a number >= 0 (pixel units, images in [0, 1]); got {std!r}")
    x, squeeze = _images(images)
    dev = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(x.shape, generator=generator, device=dev).to(x)
    return _back((x + std * noise).clamp(0.0, 1.0), squeeze)


def cutout(images, size: int = 3, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one size x size square per image, its centre uniform over the image (it may hang
    over the edge, as in DeVries & Taylor 2017). Same shape and dtype."""
    x, squeeze = _images(images)
    B, _, H, W = x.shape
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= min(H, W):
        raise ValueError(f"cutout size must be an integer in [0, {min(H, W)}] (pixels); got {size!r}")
    if size == 0:
        return images.clone()
    dev = generator.device if generator is not None else torch.device("cpu")
    cy = torch.randint(0, H, (B,), generator=generator, device=dev).to(x.device)
    cx = torch.randint(0, W, (B,), generator=generator, device=dev).to(x.device)
    top, left = cy - size // 2, cx - size // 2  # (B,)
    r = torch.arange(H, device=x.device)[None]  # (1, H)
    c = torch.arange(W, device=x.device)[None]  # (1, W)
    in_r = (r >= top[:, None]) & (r < (top + size)[:, None])  # (B, H)
    in_c = (c >= left[:, None]) & (c < (left + size)[:, None])  # (B, W)
    hole = (in_r[:, :, None] & in_c[:, None, :])[:, None]  # (B, 1, H, W)
    return _back(x.masked_fill(hole, 0.0), squeeze)


def augment_digits(images, *, generator: torch.Generator | None = None, max_shift: int = 1,
                   max_degrees: float = 15.0, noise_std: float = 0.05, cutout_size: int = 3) -> torch.Tensor:
    """One random view of each digit: shift, rotation, noise, cut-out, in that order.

    Set an argument to 0 to switch that augmentation off (to measure what each one is
    worth). images: (B, 8, 8) or (B, 1, 8, 8) float in [0, 1]; same shape and dtype back.
    Defaults chosen for 8x8 digits: 1 px shift, 15 degrees, noise 0.05, 3x3 hole.
    """
    x = images
    if max_shift:
        x = random_shift(x, max_shift, generator=generator)
    if max_degrees:
        x = random_rotation(x, max_degrees, generator=generator)
    if noise_std:
        x = gaussian_noise(x, noise_std, generator=generator)
    if cutout_size:
        x = cutout(x, cutout_size, generator=generator)
    if x is images:
        _images(images)  # still reject a bad input when everything is off
        x = images.clone()
    return x


# --------------------------------------------------------------------------- a digit encoder

__all__ += ["DigitEncoder", "embedding_spread"]


class DigitEncoder(nn.Module):
    """A small CNN for 8x8 digits with a projection head, as in SimCLR (Chen et al. 2020).

    ``features(images)``: the representation h, (B, feature_dim), read by linear probes and
    kept after training. ``forward(images)``: z = head(h), (B, projection_dim), what the
    contrastive loss sees. SimCLR found the layer *before* the head the better
    representation: the head is free to throw away what the augmentations vary.
    images: (B, 8, 8) or (B, 1, 8, 8) float in [0, 1].
    Layout: conv3x3(1->w) ReLU conv3x3(w->2w) ReLU maxpool2 -> linear(2w*16 -> feature_dim) ReLU;
    head linear(feature_dim -> feature_dim) ReLU linear(-> projection_dim).
    """

    def __init__(self, width: int = 32, feature_dim: int = 64, projection_dim: int = 32):
        super().__init__()
        for name, v in (("width", width), ("feature_dim", feature_dim), ("projection_dim", projection_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"DigitEncoder {name} must be a positive integer; got {v!r}")
        self.config = {"width": width, "feature_dim": feature_dim, "projection_dim": projection_dim}
        self.backbone = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),  # (B, w, 8, 8)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),  # (B, 2w, 8, 8)
            nn.MaxPool2d(2), nn.Flatten(),  # (B, 2w * 4 * 4)
            nn.Linear(2 * width * 16, feature_dim), nn.ReLU(),  # (B, feature_dim)
        )
        self.head = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, projection_dim)
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """h: (B, feature_dim), the representation below the projection head."""
        x, _ = _images(images)
        if tuple(x.shape[-2:]) != (8, 8):
            raise ValueError(f"DigitEncoder reads 8x8 images; got {tuple(x.shape[-2:])}")
        return self.backbone(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """z: (B, projection_dim), the projection the loss compares."""
        return self.head(self.features(images))

    def save(self, name_or_folder) -> "Path":
        """Save config and weights; a bare name goes to ``cache_dir()/checkpoints/<name>``."""
        folder = _encoder_folder(name_or_folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"config": self.config, "state_dict": self.state_dict()}, folder / "digit_encoder.pt")
        return folder

    @classmethod
    def load(cls, name_or_folder) -> "DigitEncoder":
        """The encoder saved under that name (e.g. "ch06-simclr-digits") or in that folder."""
        folder = _encoder_folder(name_or_folder)
        path = folder / "digit_encoder.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"no saved DigitEncoder at {path}; run chapter 06 (it saves 'ch06-simclr-digits') "
                "or pass the folder you saved to"
            )
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**saved["config"])
        model.load_state_dict(saved["state_dict"])
        return model


def _encoder_folder(name_or_folder):
    from pathlib import Path

    from ssledu import cache_dir

    p = Path(name_or_folder)
    return p if (p.is_absolute() or len(p.parts) > 1) else cache_dir() / "checkpoints" / str(name_or_folder)


def embedding_spread(z: torch.Tensor) -> torch.Tensor:
    """Root-mean-square distance of L2-normalised rows from their mean: sqrt(sum_d Var_d).

    z: (N, D), N >= 2. 0 when every row points the same way (collapse); 1 when the rows'
    mean is the origin (e.g. spread uniformly over the sphere). A scalar tensor.
    """
    _check_embeddings("z", z, min_rows=2)
    u = F.normalize(_wide(z), dim=1)  # (N, D)
    return (u - u.mean(0)).pow(2).sum(1).mean().sqrt()


# --------------------------------------------------------------------------- SimSiam, shuffled BN, retrieval

__all__ += ["simsiam_predictor", "simsiam_loss", "group_batch_norm", "mean_pool", "same_label_recall"]


def simsiam_predictor(dim: int = 32, hidden: int | None = None) -> nn.Module:
    """SimSiam's predictor h: Linear(dim -> hidden) BatchNorm ReLU Linear(hidden -> dim).

    A bottleneck (hidden = dim // 4 by default, as in Chen & He 2021: 2048 -> 512 -> 2048),
    with BatchNorm on the hidden layer as in the paper. Maps (N, dim) to (N, dim).
    """
    for name, v in (("dim", dim), ("hidden", dim // 4 if hidden is None else hidden)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"simsiam_predictor {name} must be a positive integer; got {v!r}")
    hidden = max(1, dim // 4) if hidden is None else hidden
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim))


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, *,
                 stop_gradient: bool = True) -> torch.Tensor:
    """SimSiam's symmetric loss: -(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2, in [-1, 1].

    z1, z2: (N, D) projections of two views; p1, p2: (N, D) the predictor applied to them.
    sg = stop-gradient (``detach``): each z is a fixed target for the other view's
    prediction. ``stop_gradient=False`` lets the gradient into the targets too, the
    ablation with which SimSiam collapses (Chen & He 2021, Fig. 2). No negatives.
    """
    for name, x in (("p1", p1), ("p2", p2), ("z1", z1), ("z2", z2)):
        _check_embeddings(name, x)
    _check_same_shape("p1", p1, "z2", z2)
    _check_same_shape("p2", p2, "z1", z1)
    t1, t2 = (z1.detach(), z2.detach()) if stop_gradient else (z1, z2)
    return -(F.cosine_similarity(_wide(p1), _wide(t2), dim=1).mean()
             + F.cosine_similarity(_wide(p2), _wide(t1), dim=1).mean()) / 2


def group_batch_norm(z: torch.Tensor, groups: int = 1, *, perm: torch.Tensor | None = None,
                     eps: float = 1e-5) -> torch.Tensor:
    """Standardise each column of z within groups of rows (BatchNorm, no affine, batch statistics).

    z: (N, D), N divisible by ``groups``, at least 2 rows per group. Rows are taken in the
    order ``perm`` (default 0..N-1), cut into ``groups`` consecutive groups, each normalised
    by its own mean and variance, and put back in the original order.
    MoCo's *shuffling BN* (He et al. 2020, sec. 3.3) on one device: the queries use groups in
    batch order, the keys groups of a random permutation, so a query and its key see
    different batch statistics and the loss cannot pick the key out by them.
    """
    _check_embeddings("z", z, min_rows=2)
    n = z.shape[0]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or n % groups or n // groups < 2:
        raise ValueError(
            f"groups must divide the batch size {n} into groups of at least 2 rows; got {groups!r}"
        )
    order = torch.arange(n, device=z.device) if perm is None else torch.as_tensor(perm, device=z.device)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError(f"perm must be a permutation of 0..{n - 1}")
    parts = [F.batch_norm(c, None, None, training=True, eps=eps) for c in z[order].chunk(groups)]
    out = torch.empty_like(z)
    out[order] = torch.cat(parts)  # back to the original row order
    return out


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over real tokens: (B, L, D) and (B, L) 1/0 mask -> (B, D)."""
    if hidden.dim() != 3 or tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"hidden must be (B, L, D) and attention_mask (B, L); got {tuple(hidden.shape)} and "
            f"{tuple(attention_mask.shape)}"
        )
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def same_label_recall(embeddings, labels, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Retrieval by cosine similarity, each item a query against all the others.

    embeddings: (N, D) array or tensor; labels: N hashable labels. For each k returns
    ``recall@k`` (share of queries with at least one same-label item among their k nearest
    neighbours; the query itself excluded) and ``precision@k`` (share of same-label items
    among those k). Ties are broken by index.
    """
    import numpy as np

    e = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    e = e.astype(np.float64)
    lab = np.asarray(labels)
    if e.ndim != 2 or len(lab) != e.shape[0] or e.shape[0] < 2:
        raise ValueError(
            f"embeddings must be (N, D) with N >= 2 and one label per row; got {e.shape} and {len(lab)} labels"
        )
    ks = [int(k) for k in ks]
    if any(k < 1 or k >= e.shape[0] for k in ks):
        raise ValueError(f"every k must be in [1, N - 1] = [1, {e.shape[0] - 1}]; got {ks}")
    e = e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)  # a query does not retrieve itself
    order = np.argsort(-sim, axis=1, kind="stable")[:, : max(ks)]  # (N, max k)
    same = lab[order] == lab[:, None]
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(same[:, :k].any(1).mean())
        out[f"precision@{k}"] = float(same[:, :k].mean())
    return out
