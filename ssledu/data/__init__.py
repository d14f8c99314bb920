"""Corpora and tokens: embedded corpora, hub corpora with local mirrors, tokenizers, blocks.

* ``load_corpus(name, split=None)`` - every corpus by name (``list_corpora()`` lists them):
  ``toyworld`` (generated, exact log-probabilities), ``pydocs`` (English from the
  Python docs), ``digits`` (8x8 images with captions), and hub corpora such as
  ``tiny_shakespeare``, ``wikitext2``, ``sst2`` (a local mirror or the hub).
* ``train_tokenizer`` / ``save_tokenizer`` / ``load_tokenizer`` (``tokenize.py``).
* ``encode_texts`` / ``pack_blocks`` / ``make_loader`` (``blocks.py``).

Names are imported lazily on first use, so ``import ssledu.data`` is cheap and a
problem in one module does not hide the others.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it
_EXPORTS = {
    "load_corpus": "hub",
    "list_corpora": "hub",
    "CorpusUnavailableError": "hub",
    "load_pydocs": "pydocs",
    "load_digits": "digits",
    "load_digits_images": "digits",
    "load_toyworld": "toyworld",
    "generate_texts": "toyworld",
    "true_nll": "toyworld",
    "World": "toyworld",
    "train_tokenizer": "tokenize",
    "save_tokenizer": "tokenize",
    "load_tokenizer": "tokenize",
    "encode_texts": "blocks",
    "pack_blocks": "blocks",
    "make_loader": "blocks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
