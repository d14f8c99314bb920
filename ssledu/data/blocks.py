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

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "encode_texts",
    "pack_blocks",
    "pad_blocks",
    "train_val_split",
    "split_blocks",
    "TokenBlocks",
    "make_loader",
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
    if isinstance(token_lists, torch.Tensor):
        if token_lists.dim() == 1:  # one document
            return [token_lists.tolist()]
        if token_lists.dim() == 2:
            return token_lists.tolist()
        raise ValueError(f"token_lists tensor must be 1-D or 2-D; got shape {tuple(token_lists.shape)}")
    docs = list(token_lists)
    if docs and isinstance(docs[0], int):  # a flat list of ids = one document
        return [docs]
    return [d.tolist() if isinstance(d, torch.Tensor) else list(d) for d in docs]


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
    return torch.tensor(stream, dtype=torch.long).view(-1, block_size)  # (N, block_size)


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
    docs = _as_documents(token_lists)
    rows, doc_ids = [], []
    for i, d in enumerate(docs):
        for start in range(0, len(d), block_size):
            rows.append(d[start : start + block_size])
            doc_ids.append(i)
    if not rows:
        raise ValueError("all documents are empty: nothing to put in blocks")
    input_ids = torch.full((len(rows), block_size), pad_id, dtype=torch.long)  # (N, L)
    attention_mask = torch.zeros((len(rows), block_size), dtype=torch.long)  # (N, L)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[r, : len(row)] = 1
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if return_doc_ids:
        out["doc_ids"] = torch.tensor(doc_ids, dtype=torch.long)
    return out


def train_val_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of ``range(n)``: returns (train_indices, val_indices) LongTensors.

    ``round(n * fraction)`` indices (at least 1) go to validation; both parts stay sorted.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction!r}")
    if n < 2:
        raise ValueError(f"need at least 2 items to split into train and validation; got n={n}")
    n_val = min(n - 1, max(1, round(n * fraction)))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def split_blocks(blocks, val_fraction: float = 0.1, seed: int = 0):
    """Split the rows of a tensor (or of each tensor in a dict) into (train, val), seeded."""
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


def make_loader(
    data,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    collate_fn=None,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader whose shuffle order depends only on ``seed``.

    data: a tensor (rows are examples; batches are ``(B, ...)`` tensors), a dict of tensors
        (batches are dicts), a list, or a ``datasets.Dataset``. Lists of variable-length
        sequences need a ``collate_fn`` (e.g. one from ``ssledu.objectives``).
    The loader owns a ``torch.Generator`` seeded with ``seed``: two loaders built with the
    same seed yield the same batches, epoch after epoch; the order changes between epochs.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(data, (torch.Tensor, dict)):
        data = TokenBlocks(data)
    if len(data) == 0:
        raise ValueError("data is empty: nothing to load")
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        collate_fn=collate_fn,
        drop_last=drop_last,
        num_workers=num_workers,
    )
