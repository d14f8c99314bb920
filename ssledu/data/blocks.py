"""From texts to training batches: encode, pack into fixed-length blocks, split, load.

The usual path for a language model::

    ids = encode_texts(tokenizer, texts)                  # list of token-id lists, [EOS] after each
    blocks = pack_blocks(ids, block_size=128)             # (N, 128) LongTensor, GPT-style packing
    train, val = split_blocks(blocks, val_fraction=0.1)   # seeded split of the rows
    loader = make_loader(train, batch_size=32, seed=0)    # seeded shuffle: same seed, same order

Packing concatenates documents into one stream and cuts it every ``block_size`` tokens,
so no position is wasted on padding but a block may start mid-document (GPT-2, GPT-3).
``pad_blocks`` (or ``pack_blocks(..., respect_documents=True)``) instead gives every
document its own rows, padded, with an attention mask: nothing ever attends across two
documents, which is what sentence-level objectives and classification need.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssledu.conventions import check_ids, pad_batch

__all__ = [
    "encode_texts",
    "pack_blocks",
    "pad_blocks",
    "train_val_split",
    "split_blocks",
    "TokenBlocks",
    "make_loader",
    "EpochBatches",
    "BatchStream",
    "TaggedBatch",
]


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string; wrap it: [text]")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}; every text must be a str")
    return texts


def encode_texts(
    tokenizer,
    texts,
    *,
    add_bos: bool = False,
    add_eos: bool | None = None,
    add_cls_sep: bool = False,
    max_length: int | None = None,
) -> list[list[int]]:
    """Token ids of each text, framed by the special tokens an objective asks for.

    tokenizer: a fast tokenizer from ``ssledu.data.tokenize.train_tokenizer`` (it adds no
        special tokens itself).
    texts: list (or any iterable) of str.
    add_bos / add_eos: put [BOS] before / [EOS] after each text (causal LM). ``add_eos``
        defaults to True, and to False when ``add_cls_sep`` is set.
    add_cls_sep: frame each text as ``[CLS] text [SEP]`` (BERT); not combinable with BOS/EOS.
    max_length: if given, truncate the text so that the framed sequence has at most this
        many ids.

    Returns a list (one per text) of lists of int ids; encoding is batched in Rust.
    """
    if add_eos is None:
        add_eos = not add_cls_sep
    if add_cls_sep and (add_bos or add_eos):
        raise ValueError(
            "add_cls_sep=True already frames each text as [CLS] ... [SEP]; "
            "do not also pass add_bos=True or add_eos=True"
        )
    texts = _check_texts(texts)
    prefix, suffix = [], []
    for flag, attr in ((add_bos, "bos_token_id"), (add_cls_sep, "cls_token_id")):
        if flag:
            prefix.append(_special_id(tokenizer, attr))
    for flag, attr in ((add_eos, "eos_token_id"), (add_cls_sep, "sep_token_id")):
        if flag:
            suffix.append(_special_id(tokenizer, attr))
    keep = None
    if max_length is not None:
        keep = max_length - len(prefix) - len(suffix)
        if keep < 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for text after "
                f"{len(prefix) + len(suffix)} special tokens; use a larger max_length"
            )
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast path: skip the Python BatchEncoding wrapper
        ids = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    else:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [prefix + (x if keep is None else x[:keep]) + suffix for x in ids]


def _special_id(tokenizer, attr: str) -> int:
    value = getattr(tokenizer, attr, None)
    if value is None:
        raise ValueError(
            f"the tokenizer has no {attr}; train it with ssledu.data.tokenize.train_tokenizer, "
            "which sets all seven special tokens"
        )
    return value


def _as_documents(token_lists) -> list[list[int]]:
    """Documents as lists; the ids themselves are checked once, on the packed result."""
    if isinstance(token_lists, (str, bytes)):
        check_ids(token_lists, what="token_lists")  # raises: encode the text first
    if isinstance(token_lists, torch.Tensor):
        if token_lists.dim() == 1:  # one document
            return [token_lists.tolist()]
        if token_lists.dim() == 2:
            return token_lists.tolist()
        raise ValueError(f"token_lists tensor must be 1-D or 2-D; got shape {tuple(token_lists.shape)}")
    docs = list(token_lists)
    if docs and isinstance(docs[0], (str, bytes)):
        raise TypeError(
            f"token_lists holds text ({docs[0][:30]!r}), not token ids; encode it first: "
            "encode_texts(tokenizer, texts)"
        )
    if docs and isinstance(docs[0], (int, float)):  # a flat list of ids = one document
        return [docs]
    out = []
    for i, d in enumerate(docs):
        if isinstance(d, torch.Tensor):
            out.append(d.reshape(-1).tolist())
        elif isinstance(d, (str, bytes)) or not hasattr(d, "__iter__"):
            raise TypeError(
                f"token_lists[{i}] is a {type(d).__name__}; each document must be a list of "
                "token ids (encode texts with encode_texts(tokenizer, texts))"
            )
        else:
            out.append(list(d))
    return out


def _check_id_arg(name: str, value, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative token id; got {value!r} "
                         "(the course's tokenizers use [PAD] = 0, [EOS] = 6)")


def _check_block_size(block_size) -> None:
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 2:
        raise ValueError(
            f"block_size must be an integer >= 2 (a block needs an input and a next token); "
            f"got {block_size!r}"
        )


def pack_blocks(
    token_lists,
    block_size: int,
    *,
    separator_id: int | None = None,
    respect_documents: bool = False,
    drop_remainder: bool = True,
    pad_id: int = 0,
) -> torch.Tensor:
    """Cut documents into rows of exactly ``block_size`` token ids.

    token_lists: list of documents (lists or 1-D tensors of ids), e.g. from ``encode_texts``.
    separator_id: id inserted BETWEEN consecutive documents of the stream (not needed when
        ``encode_texts`` already appended [EOS]).
    respect_documents: False = GPT-style packing of one concatenated stream (blocks may span
        documents). True = each document is cut on its own and its last row is padded with
        ``pad_id``: no row ever holds two documents (use ``pad_blocks`` to get the mask).
    drop_remainder: for packing, drop the final partial block (True) or pad it with
        ``pad_id`` (False). With ``respect_documents`` every row is kept.

    Returns a LongTensor ``(N, block_size)``. Row-major flattening of the packed result is
    exactly the first ``N * block_size`` ids of the stream.
    """
    _check_id_arg("pad_id", pad_id)
    _check_id_arg("separator_id", separator_id, optional=True)
    if respect_documents:
        return pad_blocks(token_lists, block_size, pad_id=pad_id)["input_ids"]
    _check_block_size(block_size)
    docs = _as_documents(token_lists)
    if separator_id is None:
        stream = list(chain.from_iterable(docs))
    else:
        stream = []
        for i, d in enumerate(docs):
            if i:
                stream.append(separator_id)
            stream.extend(d)
    n_full = len(stream) // block_size
    if drop_remainder:
        if n_full == 0:
            raise ValueError(
                f"only {len(stream)} tokens, fewer than block_size={block_size}: no full block; "
                "use a smaller block_size, more text, or drop_remainder=False"
            )
        stream = stream[: n_full * block_size]
    elif len(stream) % block_size:
        stream = stream + [pad_id] * (block_size - len(stream) % block_size)
    # numpy infers the type of a long list of ints twice as fast as torch; anything but
    # numbers (text, None) stays a list for check_ids to name
    arr = np.asarray(stream)
    blocks = torch.from_numpy(arr) if arr.dtype.kind in "biuf" else stream
    return check_ids(blocks, what="token_lists").view(-1, block_size)  # (N, block_size)


def pad_blocks(
    token_lists, block_size: int, *, pad_id: int = 0, return_doc_ids: bool = False
) -> dict[str, torch.Tensor]:
    """One document per row (long documents split over several rows), padded on the right.

    Returns ``{"input_ids": (N, block_size) LongTensor, "attention_mask": (N, block_size)
    LongTensor}`` with mask 1 on real tokens and 0 on padding (the dict can go straight to
    ``model(**batch)``). ``return_doc_ids=True`` adds ``"doc_ids": (N,)``, the index of the
    document each row came from. Empty documents give no rows.
    """
    _check_block_size(block_size)
    _check_id_arg("pad_id", pad_id)
    docs = _as_documents(token_lists)
    rows, doc_ids = [], []
    for i, d in enumerate(docs):
        for start in range(0, len(d), block_size):
            rows.append(d[start : start + block_size])
            doc_ids.append(i)
    if not rows:
        raise ValueError("all documents are empty: nothing to put in blocks")
    out = pad_batch(rows, pad_id, length=block_size)  # input_ids, attention_mask (N, L)
    if return_doc_ids:
        out["doc_ids"] = torch.tensor(doc_ids, dtype=torch.long)
    return out


def train_val_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of ``range(n)``: returns (train_indices, val_indices) LongTensors.

    ``round(n * fraction)`` indices (at least 1) go to validation; both parts stay sorted.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be the number of items (an int); got {type(n).__name__} {n!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction!r}")
    if n < 2:
        raise ValueError(f"need at least 2 items to split into train and validation; got n={n}")
    n_val = min(n - 1, max(1, round(n * fraction)))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def split_blocks(blocks, val_fraction: float = 0.1, seed: int = 0):
    """Split the rows of a tensor (or of each tensor in a dict) into (train, val), seeded."""
    if not isinstance(blocks, (torch.Tensor, dict)):
        raise TypeError(
            f"blocks must be a tensor (N, L) or a dict of tensors, e.g. from pack_blocks or "
            f"pad_blocks; got {type(blocks).__name__}"
        )
    n = len(next(iter(blocks.values()))) if isinstance(blocks, dict) else len(blocks)
    train_idx, val_idx = train_val_split(n, val_fraction, seed)
    if isinstance(blocks, dict):
        return {k: v[train_idx] for k, v in blocks.items()}, {k: v[val_idx] for k, v in blocks.items()}
    return blocks[train_idx], blocks[val_idx]


class TokenBlocks(Dataset):
    """Rows of a tensor, or of a dict of tensors sharing their first dimension, as a Dataset.

    Item ``i`` is ``data[i]`` (a tensor) or ``{key: value[i]}`` (a dict), so the default
    DataLoader collation stacks them into ``(B, ...)`` batches.
    """

    def __init__(self, data):
        if isinstance(data, dict):
            lengths = {k: len(v) for k, v in data.items()}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"all tensors must have the same number of rows; got {lengths}")
        self.data = data

    def __len__(self) -> int:
        if isinstance(self.data, dict):
            return len(next(iter(self.data.values())))
        return len(self.data)

    def __getitem__(self, i):
        if isinstance(self.data, dict):
            return {k: v[i] for k, v in self.data.items()}
        return self.data[i]


class EpochBatches(torch.utils.data.Sampler):
    """Batches of indices; epoch ``e`` is a permutation seeded by ``(seed, e)`` alone.

    Each ``iter()`` plays the next epoch, so a plain ``for`` over the loader reshuffles;
    ``set_epoch(e, skip=k)`` makes the next ``iter()`` play epoch ``e`` from its ``k``-th
    batch without touching the skipped examples (how a resumed run finds its place).
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        batches = [order[b * self.batch_size : (b + 1) * self.batch_size]
                   for b in range(self.skip, len(self))]
        self.epoch, self.skip = self.epoch + 1, 0  # the next iter() plays the next epoch
        return iter(batches)


def _stack(examples):
    return torch.utils.data.default_collate(examples)


def make_loader(
    data,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    collate_fn=None,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader whose order depends only on ``seed`` and the epoch: THE loader of ssledu.

    data: a tensor (rows are examples; batches are ``(B, ...)`` tensors), a dict of tensors
        sharing their first dimension, e.g. from ``pad_blocks`` (batches are dicts), a list,
        or a ``datasets.Dataset``. Lists of variable-length sequences need a ``collate_fn``
        (e.g. one from ``ssledu.objectives``).
    Epoch ``e`` is the permutation drawn from ``(seed, e)`` (an ``EpochBatches`` batch
    sampler, ``loader.batch_sampler``): two loaders built with the same seed yield the same
    batches, epoch after epoch; the order changes between epochs; the global RNG plays no
    part. ``fit`` and ``BatchStream`` use this loader and resume it mid-epoch.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(data, (torch.Tensor, dict)):
        data = TokenBlocks(data)
    try:
        n = len(data)
    except TypeError:
        raise TypeError(
            f"data must be a tensor, a dict of tensors, a list or a Dataset; got "
            f"{type(data).__name__} (an iterable without a length: build your own DataLoader)"
        ) from None
    if n == 0:
        raise ValueError("data is empty: nothing to load; check the split or the filtering that built it")
    sampler = EpochBatches(n, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    if len(sampler) == 0:
        raise ValueError(f"drop_last=True with {n} examples < batch_size={batch_size} leaves no "
                         "batch; use a smaller batch_size or drop_last=False")
    return DataLoader(data, batch_sampler=sampler, collate_fn=collate_fn or _stack,
                      num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed))


class TaggedBatch(dict):
    """A batch dict that also carries ``tags`` (str labels of the batch, e.g. its mask kind).

    The tags are not keys, so ``model(**batch)`` never sees them; ``fit`` records them in
    the history beside the step that trained on the batch.
    """

    def __init__(self, *args, tags: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tags = dict(tags or {})


def _loader_generators(loader) -> list:
    """The torch.Generators that decide a user DataLoader's order (deduplicated)."""
    found = []
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


class BatchStream:
    """An endless stream of batches over epochs that knows its place, for resumable loops.

    loader: from ``make_loader`` (order from the seed and epoch alone: resuming skips the
        used batches without loading them) or any DataLoader (resuming replays the epoch
        from its start, with the RNG states saved when it began, up to the offset).
    ``next()`` returns a batch, or None after ``max_epochs`` epochs; ``state_dict()`` /
    ``load_state_dict()`` save and restore (epoch, offset, RNG states at the epoch start).
    Restoring sets the global torch RNG: restore the run's own RNG state after it.
    """

    def __init__(self, loader, max_epochs: int | None = None):
        self.loader, self.max_epochs = loader, max_epochs
        sampler = getattr(loader, "batch_sampler", None)
        self.sampler = sampler if isinstance(sampler, EpochBatches) else None
        self.epoch, self.offset = 0, 0
        self.epoch_start = None  # RNG states at the start of the epoch, for resuming
        self._it = None
        try:
            self.batches_per_epoch = len(loader)
        except TypeError:
            self.batches_per_epoch = None

    def _begin_epoch(self, skip: int):
        gens = _loader_generators(self.loader) if self.sampler is None else []
        if self.epoch_start is None:
            self.epoch_start = {"torch": torch.get_rng_state(), "gens": [g.get_state() for g in gens]}
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch, skip)
            self._it = iter(self.loader)
        else:
            self._it = iter(self.loader)
            for _ in range(skip):  # a user DataLoader: replay the epoch up to the offset
                next(self._it)

    def next(self):
        """The next batch, or None when ``max_epochs`` epochs are done."""
        while True:
            if self._it is None:
                if self.max_epochs is not None and self.epoch >= self.max_epochs:
                    return None
                self._begin_epoch(0)
            try:
                batch = next(self._it)
                self.offset += 1
                return batch
            except StopIteration:
                if self.offset == 0:
                    raise ValueError("the training data yields no batch; is it empty?") from None
                self._it, self.epoch, self.offset, self.epoch_start = None, self.epoch + 1, 0, None

    def __iter__(self):
        while (batch := self.next()) is not None:
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset, "epoch_start": self.epoch_start}

    def load_state_dict(self, state: dict) -> None:
        """Continue at a saved place (run before restoring the step's RNG state)."""
        self.epoch, self.offset = state["epoch"], state["offset"]
        self.epoch_start = state["epoch_start"]
        if self.epoch_start is not None:
            # Recreate the epoch's order exactly as it was drawn, then skip what was used.
            torch.set_rng_state(self.epoch_start["torch"])
            gens = _loader_generators(self.loader) if self.sampler is None else []
            for g, s in zip(gens, self.epoch_start["gens"]):
                g.set_state(s)
            self._begin_epoch(self.offset)
        else:
            self._it = None
