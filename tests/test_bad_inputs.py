"""Every bad input a learner can give gets an error that names the limit and the fix.

One table: each row calls the public API with one bad input and states the exception type
and the words its message must contain (case-insensitive). Rows are grouped by area; add
yours in your area's section. Models are nano presets with 16 positions, built once.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ssledu import conventions, models, probe, viz
from ssledu.baselines import LSTMLanguageModel, NGramLM, lstm_matching
from ssledu.data import blocks, digits, pydocs, tokenize, toyworld
from ssledu.objectives import clm, mlm, prefix


@dataclass
class Case:
    id: str                      # "mlm.mask_tokens-string"
    call: Callable[[], object]   # lambda: mlm.mask_tokens("hello", ...)
    exc: type[BaseException] | tuple
    mentions: tuple[str, ...]    # words the message must contain (case-insensitive)


# --- small shared objects, built on first use -------------------------------------------

TEXTS = ["the red circle is big", "a small blue square waits", "the star jumps to the left"]
LONG = [7 + i % 10 for i in range(20)]  # 20 ordinary word ids: longer than the 16 positions


@functools.cache
def tok():
    return tokenize.train_tokenizer(TEXTS * 2, kind="word")


@functools.cache
def bert():
    torch.manual_seed(0)
    return models.bert(tok(), "nano", max_len=16)


@functools.cache
def gpt():
    torch.manual_seed(0)
    return models.gpt(tok(), "nano", max_len=16)


def V() -> int:
    return len(tok())


def ids(n: int = 5, b: int = 1) -> torch.Tensor:
    return torch.arange(7, 7 + n).repeat(b, 1) % V()  # (b, n) ordinary words


def with_env(name: str, value: str, fn):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def saved_tokenizer_with(tmp_text: str):
    """A tokenizer folder whose tokenizer.json holds ``tmp_text``; returns the load call's result."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="ssledu-badtok-")
    tokenize.save_tokenizer(tok(), folder)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as fh:
        fh.write(tmp_text)
    return tokenize.load_tokenizer(folder)


def foreign_tokenizer():
    """A tokenizer.json whose special tokens sit elsewhere than ids 0..6."""
    import json
    import tempfile

    folder = tempfile.mkdtemp(prefix="ssledu-badtok-")
    tokenize.save_tokenizer(tok(), folder)
    path = os.path.join(folder, "tokenizer.json")
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    vocab = data["model"]["vocab"]
    vocab["[PAD]"], vocab["the"] = vocab["the"], vocab["[PAD]"]
    for t in data["added_tokens"]:
        if t["content"] == "[PAD]":
            t["id"] = vocab["[PAD]"]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    return tokenize.load_tokenizer(folder)


CASES: list[Case] = []

# ======================================================================================
# conventions, objectives, data, models, probe, viz, baselines
# ======================================================================================

# --- ssledu.conventions ---
CASES += [
    Case("conventions.pad_batch-string", lambda: conventions.pad_batch("hello", 0),
         TypeError, ("string", "encode")),
    Case("conventions.pad_batch-length-too-short", lambda: conventions.pad_batch([[1, 2, 3]], 0, length=2),
         ValueError, ("3 tokens", "length=2", "raise length")),
    Case("conventions.pad_batch-side", lambda: conventions.pad_batch([[1]], 0, side="top"),
         ValueError, ("right", "left", "'top'")),
    Case("conventions.pad_batch-empty", lambda: conventions.pad_batch([], 0),
         ValueError, ("empty", "at least one")),
    Case("conventions.check_ids-float", lambda: conventions.check_ids([1.5, 2.0]),
         TypeError, ("integer", "float", ".long()")),
    Case("conventions.env_flag-typo", lambda: with_env("SSLEDU_BAD_FLAG", "maybe",
                                                       lambda: conventions.env_flag("SSLEDU_BAD_FLAG")),
         ValueError, ("SSLEDU_BAD_FLAG", "'maybe'", "1/true/yes/on", "0/false/no/off")),
    Case("conventions.context_length-unknown", lambda: conventions.context_length(torch.nn.Linear(2, 2)),
         ValueError, ("context length", "n_positions", "pass the length")),
    Case("conventions.eval_mode-not-a-module", lambda: conventions.eval_mode("bert").__enter__(),
         TypeError, ("nn.Module", "str")),
    Case("conventions.mask_allows-int-mask", lambda: conventions.mask_allows(torch.tensor([1, 0])),
         TypeError, ("additive", "bool()")),
]

# --- ssledu.objectives.mlm ---
CASES += [
    Case("mlm.mask_tokens-string", lambda: mlm.mask_tokens("hello", tok()),
         TypeError, ("string", "encode", "tokenizer(text)")),
    Case("mlm.mask_tokens-list-of-strings", lambda: mlm.mask_tokens(["the", "cat"], tok()),
         TypeError, ("string", "encode")),
    Case("mlm.mask_tokens-negative-id", lambda: mlm.mask_tokens(torch.tensor([[7, -3, 8]]), tok()),
         ValueError, (">= 0", "-3")),
    Case("mlm.mask_tokens-float-ids", lambda: mlm.mask_tokens(torch.tensor([[7.0, 8.5]]), tok()),
         TypeError, ("integer", "float32", ".long()")),
    Case("mlm.mask_tokens-id-past-vocabulary", lambda: mlm.mask_tokens(torch.tensor([[7, V()]]), tok()),
         ValueError, ("outside the vocabulary", f"0..{len(tok()) - 1}", "tokenizer")),
    Case("mlm.mask_tokens-probability", lambda: mlm.mask_tokens(ids(), tok(), mlm_probability=1.5),
         ValueError, ("mlm_probability", "[0, 1]", "1.5")),
    Case("mlm.mask_tokens-replace-sum", lambda: mlm.mask_tokens(ids(), tok(), mask_replace_prob=0.8,
                                                               random_replace_prob=0.5),
         ValueError, ("must not exceed 1", "0.8 and 0.1")),
    Case("mlm.mask_tokens-ragged", lambda: mlm.mask_tokens([[7, 8, 9], [7]], tok()),
         ValueError, ("different lengths", "pad")),
    Case("mlm.mask_tokens-3d", lambda: mlm.mask_tokens(torch.ones(1, 2, 3, dtype=torch.long), tok()),
         ValueError, ("(B, L)", "(1, 2, 3)")),
    Case("mlm.mask_tokens_exact-max-predictions", lambda: mlm.mask_tokens_exact(ids(), tok(), max_predictions=0),
         ValueError, ("max_predictions", "positive integer")),
    Case("mlm.MLMCollator-strategy", lambda: mlm.MLMCollator(tok(), strategy="span"),
         ValueError, ("strategy", "whole_word", "'span'")),
    Case("mlm.MLMCollator-longer-than-positions", lambda: mlm.MLMCollator(tok(), model=bert())([LONG]),
         ValueError, ("20 tokens", "at most 16 positions", "pack_blocks")),
    Case("mlm.MLMCollator-id-past-vocabulary", lambda: mlm.MLMCollator(tok(), model=bert())([[7, V() + 3]]),
         ValueError, ("examples[0]", "outside the vocabulary", "tokenizer the model was built for")),
    Case("mlm.MLMCollator-string-example", lambda: mlm.MLMCollator(tok())(["the red circle"]),
         TypeError, ("examples[0]", "string", "encode")),
    Case("mlm.MLMCollator-empty", lambda: mlm.MLMCollator(tok())([]),
         ValueError, ("empty",)),
    Case("mlm.mlm_collator-pad-multiple", lambda: mlm.mlm_collator(tok(), pad_to_multiple_of=0),
         ValueError, ("pad_to_multiple_of", "positive integer")),
    Case("mlm.fill_mask-no-mask", lambda: mlm.fill_mask(bert(), tok(), "the red circle"),
         ValueError, ("[MASK]", "e.g.")),
    Case("mlm.fill_mask-list", lambda: mlm.fill_mask(bert(), tok(), ["the [MASK] circle"]),
         TypeError, ("one string", "once per text")),
    Case("mlm.fill_mask-too-long", lambda: mlm.fill_mask(bert(), tok(), " ".join(["the"] * 20) + " [MASK]"),
         ValueError, ("at most 16 positions", "shorten")),
    Case("mlm.fill_mask-k", lambda: mlm.fill_mask(bert(), tok(), "the [MASK] circle", k=0),
         ValueError, ("k must be", "vocab size")),
    Case("mlm.cloze_scores-string", lambda: mlm.cloze_scores(bert(), tok(), "the red circle"),
         TypeError, ("list of strings", "wrap")),
    Case("mlm.cloze_scores-batch-size", lambda: mlm.cloze_scores(bert(), tok(), TEXTS, batch_size=0),
         ValueError, ("batch_size", "positive integer")),
    Case("mlm.masked_accuracy-k", lambda: mlm.masked_accuracy(torch.zeros(1, 2, 5), torch.zeros(1, 2).long(), k=9),
         ValueError, ("k must be", "[1, vocab size 5]")),
    Case("mlm.nsp_pairs-one-document", lambda: mlm.nsp_pairs(["a b. c d."], tok()),
         ValueError, ("two non-empty documents",)),
    Case("mlm.nsp_pairs-max-len", lambda: mlm.nsp_pairs(TEXTS, tok(), max_len=3),
         ValueError, ("max_len", ">= 5", "[CLS] a [SEP] b [SEP]")),
    Case("mlm.mask_whole_words-no-word-ids", lambda: mlm.mask_whole_words(ids(), None, tok()),
         TypeError, ("word_ids", "enc.word_ids(i)", "mask_tokens")),
    Case("mlm.mlm_loss-shapes", lambda: mlm.mlm_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4).long()),
         ValueError, ("(B, L, V)", "(2, 3, 5)", "(2, 4)", "same batch")),
    Case("mlm.masked_accuracy-shapes", lambda: mlm.masked_accuracy(torch.zeros(2, 3, 5), torch.zeros(3).long()),
         ValueError, ("(B, L)", "same b and l")),
    Case("mlm.split_sentences-list", lambda: mlm.split_sentences(TEXTS),
         TypeError, ("one string", "for t in texts")),
    Case("mlm.unbatch-empty", lambda: mlm.unbatch({}),
         ValueError, ("non-empty dict", "nsp_pairs")),
    Case("mlm.pretraining_loss-no-pair-labels", lambda: mlm.pretraining_loss(bert(), {"input_ids": ids()}),
         ValueError, ("next_sentence_label", "nsp_pairs")),
]

# --- ssledu.objectives.clm ---
CASES += [
    Case("clm.causal_lm_batch-string", lambda: clm.causal_lm_batch("hello", pad_id=0),
         TypeError, ("string", "encode")),
    Case("clm.causal_lm_batch-list-of-strings", lambda: clm.causal_lm_batch(["the cat", "a dog"], pad_id=0),
         TypeError, ("string", "encode")),
    Case("clm.causal_lm_batch-float-ids", lambda: clm.causal_lm_batch([[1.0, 2.5]], pad_id=0),
         TypeError, ("examples[0]", "integer", ".long()")),
    Case("clm.causal_lm_batch-empty-sequence", lambda: clm.causal_lm_batch([[5, 6], []], pad_id=0),
         ValueError, ("empty sequence", "drop empty texts")),
    Case("clm.causal_lm_batch-no-examples", lambda: clm.causal_lm_batch([], pad_id=0),
         ValueError, ("no examples",)),
    Case("clm.clm_collator-id-past-vocabulary", lambda: clm.clm_collator(0, model=gpt())([[5, V() + 1]]),
         ValueError, ("outside the vocabulary", "tokenizer the model was built for")),
    Case("clm.clm_collator-longer-than-positions", lambda: clm.clm_collator(0, model=gpt())([LONG]),
         ValueError, ("20 tokens", "at most 16 positions", "max_length=16")),
    Case("clm.clm_collator-pad-id", lambda: clm.clm_collator(-1),
         ValueError, ("pad_id", "non-negative", "[PAD] = 0")),
    Case("clm.perplexity-context-past-positions", lambda: clm.perplexity(gpt(), [LONG], context=500),
         ValueError, ("context=500", "16 positions", "context <= 16")),
    Case("clm.perplexity-id-past-vocabulary", lambda: clm.perplexity(gpt(), [[5, 6, V() + 2]]),
         ValueError, ("outside the vocabulary", f"{len(tok())} ids")),
    Case("clm.perplexity-string", lambda: clm.perplexity(gpt(), "the red circle"),
         TypeError, ("string", "encode")),
    Case("clm.perplexity-stride", lambda: clm.perplexity(gpt(), [[5, 6, 7]], stride=0),
         ValueError, ("stride", "[1, context=16]")),
    Case("clm.perplexity-batch-size", lambda: clm.perplexity(gpt(), [[5, 6, 7]], batch_size=0),
         ValueError, ("batch_size", "positive integer")),
    Case("clm.filter_logits-temperature", lambda: clm.filter_logits(torch.zeros(5), temperature=0),
         ValueError, ("temperature", "> 0", "greedy=True")),
    Case("clm.filter_logits-top-p", lambda: clm.filter_logits(torch.zeros(5), top_p=2.0),
         ValueError, ("top_p", "[0, 1]")),
    Case("clm.pack_documents-eos-id", lambda: clm.pack_documents([[5, 6, 7]], 2, eos_id=-1),
         ValueError, ("eos_id", "non-negative", "tokenizer.eos_token_id")),
    Case("clm.per_position_nll-id-past-vocabulary", lambda: clm.per_position_nll(gpt(), torch.tensor([[5, V() + 4]])),
         ValueError, ("outside the vocabulary",)),
    Case("clm.per_position_nll-1d", lambda: clm.per_position_nll(gpt(), torch.tensor([5, 6])),
         ValueError, ("(B, L)", ".unsqueeze(0)")),
    Case("clm.per_position_nll-past-positions", lambda: clm.per_position_nll(gpt(), torch.tensor([LONG])),
         ValueError, ("20 positions", "at most 16", "perplexity(..., context=16)")),
    Case("clm.pack_documents-block-size", lambda: clm.pack_documents([[5, 6]], 1, eos_id=6),
         ValueError, ("block_size", ">= 2", "one context + one target")),
    Case("clm.shift_for_next_token-one-token", lambda: clm.shift_for_next_token(torch.tensor([[5]])),
         ValueError, ("at least 2 tokens",)),
    Case("clm.next_token_distribution-k", lambda: clm.next_token_distribution(gpt(), tok(), "the", k=0),
         ValueError, ("k must be", "positive integer")),
    Case("clm.next_token_distribution-too-long",
         lambda: clm.next_token_distribution(gpt(), tok(), " ".join(["the"] * 20)),
         ValueError, ("at most 16", "shorten the prompt")),
    Case("clm.compare_to_floor-string", lambda: clm.compare_to_floor(gpt(), tok(), "the red circle"),
         TypeError, ("list", "wrap")),
    Case("clm.sampling_loop-negative", lambda: clm.sampling_loop(lambda x: None, ids(), -1),
         ValueError, ("max_new_tokens", ">= 0")),
    Case("clm.generate-float-ids", lambda: clm.generate(gpt(), torch.tensor([[7.0, 8.5]]), 2),
         TypeError, ("integer token ids", ".long()")),
    Case("clm.generate-id-past-vocabulary", lambda: clm.generate(gpt(), [[7, V() + 3]], 2),
         ValueError, ("outside the vocabulary", "tokenizer the model was built for")),
    Case("clm.generate-string", lambda: clm.generate(gpt(), "the red", 2),
         TypeError, ("not a string", "encode the text first")),
]

# --- ssledu.objectives.prefix ---
CASES += [
    Case("prefix.UniLMMixture-empty-batch", lambda: prefix.UniLMMixture(tokenizer=tok())([]),
         ValueError, ("empty list of examples", "at least one")),
    Case("prefix.UniLMMixture-string-examples", lambda: prefix.UniLMMixture(tokenizer=tok())(["the cat"]),
         TypeError, ("string", "encode")),
    Case("prefix.UniLMMixture-id-past-vocabulary", lambda: prefix.UniLMMixture(tokenizer=tok())([[7, V()]]),
         ValueError, ("examples[0]", "outside the vocabulary")),
    Case("prefix.UniLMMixture-unknown-kind", lambda: prefix.UniLMMixture(kinds=("causal", "t5")),
         ValueError, ("'t5'", "available", "bidirectional")),
    Case("prefix.UniLMMixture-no-tokenizer", lambda: prefix.UniLMMixture(),
         ValueError, ("bidirectional", "tokenizer=")),
    Case("prefix.UniLMMixture-weights", lambda: prefix.UniLMMixture(("causal", "prefix"), weights=[1, -1]),
         ValueError, ("weights", "non-negative", "one per kind")),
    Case("prefix.prefix_mask-too-long-prefix", lambda: prefix.prefix_mask(torch.ones(1, 4), 6),
         ValueError, ("[0, real length]", "6", "4 real tokens")),
    Case("prefix.causal_mask-1d", lambda: prefix.causal_mask(torch.ones(4)),
         ValueError, ("(B, L)", ".unsqueeze(0)")),
    Case("prefix.causal_mask-not-01", lambda: prefix.causal_mask(torch.tensor([[1, 2]])),
         ValueError, ("only 0", "1 (real token)")),
    Case("prefix.prefix_mask-left-padding", lambda: prefix.prefix_mask(torch.tensor([[0, 1, 1]]), 1),
         ValueError, ("right padding", "padding_side='right'")),
    Case("prefix.build_mask-unknown-kind", lambda: prefix.build_mask("diagonal", torch.ones(1, 3)),
         ValueError, ("'diagonal'", "available", "causal")),
    Case("prefix.prefix_lm_batch-float-ids", lambda: prefix.prefix_lm_batch(torch.ones(1, 4)),
         TypeError, ("input_ids", "integer", ".long()")),
    Case("prefix.prefix_lm_batch-one-token", lambda: prefix.prefix_lm_batch(torch.tensor([[7]])),
         ValueError, ("at least 2 real tokens",)),
    Case("prefix.prefix_generate-past-positions", lambda: prefix.prefix_generate(bert(), ids(4), 40),
         ValueError, ("context of 16 positions", "fewer tokens")),
    Case("prefix.prefix_generate-id-past-vocabulary", lambda: prefix.prefix_generate(bert(), [[7, V() + 1]], 2),
         ValueError, ("prompt_ids", "outside the vocabulary")),
    Case("prefix.leak_test-mask-shape", lambda: prefix.leak_test(bert(), ids(4), torch.zeros(4, 4)),
         ValueError, ("(1, 1, L, L)", "build_mask")),
    Case("prefix.blank_each-position", lambda: prefix.blank_each(torch.tensor([7, 8, 9]), [5], 4),
         ValueError, ("positions", "[0, 2]")),
    Case("prefix.permutation_lm_example-odd", lambda: prefix.permutation_lm_example(torch.tensor([7, 8, 9]), tok()),
         ValueError, ("even", "drop or add one token")),
    Case("prefix.position_scores-missing-keys", lambda: prefix.position_scores(bert(), {"input_ids": ids()}),
         ValueError, ("attention_mask", "labels", "prefix_lm_batch")),
    Case("prefix.blank_each-mask-token", lambda: prefix.blank_each(torch.tensor([7, 8]), [0], "[MASK]"),
         ValueError, ("mask_token_id", "tokenizer.mask_token_id")),
    Case("prefix.allowed-shape", lambda: prefix.allowed(torch.zeros(2, 3)),
         ValueError, ("(B, 1, L, L)", "(2, 3)")),
]

# --- ssledu.data.blocks ---
CASES += [
    Case("blocks.pack_blocks-string", lambda: blocks.pack_blocks("hello", 4),
         TypeError, ("string", "encode")),
    Case("blocks.pack_blocks-list-of-texts", lambda: blocks.pack_blocks(["the cat", "a dog"], 4),
         TypeError, ("text", "encode_texts")),
    Case("blocks.pack_blocks-float-ids", lambda: blocks.pack_blocks([[1.5, 2.0, 3.0, 4.0]], 2),
         TypeError, ("integer", ".long()")),
    Case("blocks.pack_blocks-negative-ids", lambda: blocks.pack_blocks([[1, -2, 3, 4]], 2),
         ValueError, (">= 0", "-2")),
    Case("blocks.pack_blocks-block-size", lambda: blocks.pack_blocks([[1, 2, 3]], 1),
         ValueError, ("block_size", ">= 2")),
    Case("blocks.pack_blocks-too-few-tokens", lambda: blocks.pack_blocks([[1, 2, 3]], 8),
         ValueError, ("only 3 tokens", "smaller block_size", "drop_remainder=False")),
    Case("blocks.pack_blocks-pad-id", lambda: blocks.pack_blocks([[1, 2, 3]], 2, pad_id=-1, drop_remainder=False),
         ValueError, ("pad_id", "non-negative", "[PAD] = 0")),
    Case("blocks.pad_blocks-document-not-a-list", lambda: blocks.pad_blocks([[1, 2], 3], 4),
         TypeError, ("token_lists[1]", "list of token ids")),
    Case("blocks.pad_blocks-empty", lambda: blocks.pad_blocks([[], []], 4),
         ValueError, ("empty",)),
    Case("blocks.encode_texts-string", lambda: blocks.encode_texts(tok(), "the red circle"),
         TypeError, ("list of strings", "[text]")),
    Case("blocks.encode_texts-cls-and-bos", lambda: blocks.encode_texts(tok(), TEXTS, add_cls_sep=True, add_bos=True),
         ValueError, ("[CLS] ... [SEP]", "add_bos=True")),
    Case("blocks.encode_texts-max-length", lambda: blocks.encode_texts(tok(), TEXTS, add_cls_sep=True, max_length=2),
         ValueError, ("max_length=2", "no room", "larger max_length")),
    Case("blocks.train_val_split-n", lambda: blocks.train_val_split("10"),
         TypeError, ("number of items", "str")),
    Case("blocks.split_blocks-list", lambda: blocks.split_blocks([[1, 2], [3, 4]]),
         TypeError, ("tensor (N, L)", "pack_blocks")),
    Case("blocks.train_val_split-fraction", lambda: blocks.train_val_split(10, 1.5),
         ValueError, ("fraction", "(0, 1)")),
]

# --- ssledu.data.tokenize ---
CASES += [
    Case("tokenize.train_tokenizer-kind", lambda: tokenize.train_tokenizer(TEXTS, kind="sentencepiece"),
         ValueError, ("'sentencepiece'", "available", "wordpiece")),
    Case("tokenize.train_tokenizer-string", lambda: tokenize.train_tokenizer("the red circle"),
         TypeError, ("single string", "[text]")),
    Case("tokenize.train_tokenizer-vocab-too-small", lambda: tokenize.train_tokenizer(TEXTS, kind="bpe", vocab_size=100),
         ValueError, ("too small", "minimum is 263", "256 bytes")),
    Case("tokenize.load_tokenizer-missing", lambda: tokenize.load_tokenizer("/nonexistent/tok"),
         FileNotFoundError, ("no tokenizer.json", "save_tokenizer")),
    Case("tokenize.load_tokenizer-corrupt", lambda: saved_tokenizer_with("{not json"),
         ValueError, ("tokenizer.json", "corrupt", "delete", "train the tokenizer again")),
    Case("tokenize.load_tokenizer-foreign-layout", foreign_tokenizer,
         ValueError, ("tokenizer.json", "layout", "[PAD]=0", "delete", "train the tokenizer again")),
    Case("tokenize.save_tokenizer-arguments-swapped", lambda: tokenize.save_tokenizer("/tmp/tok", tok()),
         TypeError, ("tokenizer object first", "train_tokenizer")),
    Case("tokenize.sentinel_id-k", lambda: tokenize.sentinel_id(tok(), "a"),
         ValueError, ("k must be", "non-negative integer")),
    Case("tokenize.sentinel_id-missing", lambda: tokenize.sentinel_id(tok(), 0),
         ValueError, ("<extra_id_0>", "sentinels=n")),
]

# --- ssledu.models ---
CASES += [
    Case("models.bert-tokenizer-name", lambda: models.bert("my-tokenizer"),
         TypeError, ("'my-tokenizer'", "load_tokenizer", "integer vocabulary size")),
    Case("models.gpt-list", lambda: models.gpt(["a", "b"]),
         TypeError, ("tokenizer", "int vocabulary size", "list")),
    Case("models.bert-preset", lambda: models.bert(50, "huge"),
         ValueError, ("'huge'", "nano", "override")),
    Case("models.bert-heads", lambda: models.bert(50, "nano", d_model=66, n_head=4),
         ValueError, ("not divisible", "d_model=68")),
    Case("models.gpt-dropout", lambda: models.gpt(50, "nano", dropout=1.5),
         ValueError, ("dropout", "[0, 1)")),
    Case("models.bert-head", lambda: models.bert(50, "nano", head="seq2seq"),
         ValueError, ("'seq2seq'", "'mlm'", "classification")),
    Case("models.bart-unknown-override", lambda: models.bart(50, "nano", layers=3),
         ValueError, ("'layers'", "n_layer")),
    Case("models.describe-not-a-model", lambda: models.describe("bert"),
         TypeError, ("transformers model", "count_parameters")),
    Case("models.count_parameters-not-a-model", lambda: models.count_parameters("bert"),
         TypeError, ("torch model", "str")),
    Case("models.gpt-attn", lambda: models.gpt(50, "nano", attn="flash"),
         ValueError, ("'sdpa' or 'eager'", "output_attentions")),
]

# --- ssledu.probe ---
CASES += [
    Case("probe.frozen_features-layer-out-of-range", lambda: probe.frozen_features(bert(), tok(), TEXTS, layers=99),
         ValueError, ("layers=99", "3 hidden states", "0..2", "layers='last'")),
    Case("probe.frozen_features-layers-type", lambda: probe.frozen_features(bert(), tok(), TEXTS, layers="first"),
         ValueError, ("'last', 'all'", "list of ints")),
    Case("probe.frozen_features-string", lambda: probe.frozen_features(bert(), tok(), "the red circle"),
         TypeError, ("list of strings", "[text]")),
    Case("probe.frozen_features-max-length", lambda: probe.frozen_features(bert(), tok(), TEXTS, max_length=64),
         ValueError, ("max_length=64", "16 positions", "max_length <= 16")),
    Case("probe.frozen_features-pooling", lambda: probe.frozen_features(bert(), tok(), TEXTS, pooling="max"),
         ValueError, ("pooling", "'mean' or 'cls'")),
    Case("probe.label_efficiency-zero-labels",
         lambda: probe.label_efficiency(np.zeros((6, 2)), [0, 1] * 3, np.zeros((2, 2)), [0, 1], sizes=[0]),
         ValueError, ("sizes", ">= 1", "None = all 6")),
    Case("probe.label_efficiency-rows",
         lambda: probe.label_efficiency(np.zeros((6, 2)), [0, 1], np.zeros((2, 2)), [0, 1]),
         ValueError, ("same number of rows", "6 train features for 2 labels")),
    Case("probe.label_efficiency-1d-features",
         lambda: probe.label_efficiency(np.zeros(6), [0, 1] * 3, np.zeros(2), [0, 1]),
         ValueError, ("(N, D)", "frozen_features")),
    Case("probe.subsample_per_class-n", lambda: probe.subsample_per_class(np.array([0, 1]), 0, seed=0),
         ValueError, ("n must be", "positive integer")),
]

# --- ssledu.viz ---
CASES += [
    Case("viz.image_grid-empty", lambda: viz.image_grid([]),
         ValueError, ("no images", "at least one")),
    Case("viz.image_grid-ncols", lambda: viz.image_grid(np.zeros((2, 4, 4)), ncols=0),
         ValueError, ("ncols", "positive integer")),
    Case("viz.loss_curves-none", lambda: viz.loss_curves(None),
         TypeError, ("History", "list of losses", "loss_curves(history)")),
    Case("viz.embedding_projection-nan", lambda: viz.embedding_projection(np.full((5, 3), np.nan)),
         ValueError, ("NaN", "5 of 5 rows", "lower learning rate")),
    Case("viz.token_probability_bars-k", lambda: viz.token_probability_bars(torch.zeros(5), list("abcde"), k=0),
         ValueError, ("k must be", "positive integer")),
    Case("viz.allowed_positions-1d", lambda: viz.allowed_positions(torch.ones(4)),
         ValueError, ("(L, L)", "padding mask", "build the matrix")),
    Case("viz.mask_matrices-empty", lambda: viz.mask_matrices({}),
         ValueError, ("non-empty dict",)),
    Case("viz.attention_grid-layer", lambda: viz.attention_grid(torch.rand(2, 2, 3, 3), layer=5),
         ValueError, ("layer 5", "out of range", "0..1")),
]

# --- ssledu.baselines ---
CASES += [
    Case("baselines.NGramLM.fit-string", lambda: NGramLM(2, 10).fit("hello"),
         TypeError, ("string", "encode")),
    Case("baselines.NGramLM.fit-flat-list", lambda: NGramLM(2, 10).fit([1, 2, 3]),
         TypeError, ("list of token-id lists", "fit([ids])")),
    Case("baselines.NGramLM.fit-id-past-vocabulary", lambda: NGramLM(2, 5).fit([[0, 9]]),
         ValueError, ("token_lists[0]", "outside the vocabulary", "0..4")),
    Case("baselines.NGramLM.log_prob-token-type",
         lambda: NGramLM(2, 5).fit([[0, 1, 2]]).log_prob([0], "a"),
         TypeError, ("one integer id",)),
    Case("baselines.LSTMLanguageModel-id-past-vocabulary",
         lambda: LSTMLanguageModel(10, d_model=8, n_layer=1)(torch.tensor([[1, 20]])),
         ValueError, ("outside the vocabulary", "0..9")),
    Case("baselines.LSTMLanguageModel-float-ids",
         lambda: LSTMLanguageModel(10, d_model=8, n_layer=1)(torch.tensor([[1.0, 2.0]])),
         TypeError, ("LongTensor", "float32", "torch.tensor(ids)")),
    Case("baselines.LSTMLanguageModel-vocab-size", lambda: LSTMLanguageModel(0),
         ValueError, ("vocab_size", ">= 2", "len(tokenizer)")),
    Case("baselines.lstm_matching-target", lambda: lstm_matching("gpt", 50),
         TypeError, ("GPT model", "parameter count")),
]

# --- ssledu.data.toyworld and digits ---
CASES += [
    Case("toyworld.generate_texts-negative", lambda: toyworld.generate_texts(-1),
         ValueError, ("n must be", "non-negative")),
    Case("toyworld.true_nll-unknown-word", lambda: toyworld.true_nll("zzz qqq"),
         ValueError, ("'zzz'", "vocabulary", "toyworld.vocabulary")),
    Case("toyworld.generate_texts-world-name", lambda: toyworld.generate_texts(3, world="tiny"),
         TypeError, ("toyworld.World", "None for the default")),
    Case("digits.caption-range", lambda: digits.caption(10),
         ValueError, ("0..9", "10")),
    Case("digits.caption-float", lambda: digits.caption(3.5),
         ValueError, ("integer", "0..9", "3.5")),
    Case("digits.load_digits-seed", lambda: digits.load_digits(seed="a"),
         ValueError, ("seed", "non-negative integer")),
    Case("digits.load_digits-fractions", lambda: digits.load_digits(validation_fraction=0.6, test_fraction=0.5),
         ValueError, ("leave some training data", "0.6 + 0.5")),
]

# ======================================================================================
# CLI (ssledu.cli): add rows here
# ======================================================================================
# A command does not raise: it prints and exits. ``run_cli`` turns a non-zero exit status
# into ``CliExit("exit <status>" + what it printed)``, so a row checks status and words.


class CliExit(Exception):
    """``ssledu ...`` ended with a non-zero status; the message holds it and the output."""


def run_cli(*argv: str, env: dict[str, str] | None = None):
    import contextlib
    import io

    from ssledu import cli

    out = io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                status = cli.main(list(argv))
            except SystemExit as exc:
                status = exc.code
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if status:
        raise CliExit(f"exit {status}\n{out.getvalue()}")
    return out.getvalue()


CASES += [
    Case("cli.no-subcommand", lambda: run_cli(), CliExit, ("exit 2", "doctor", "course", "bench")),
    Case("cli.unknown-subcommand", lambda: run_cli("train"), CliExit, ("exit 2", "invalid choice", "bench")),
    Case("cli.bench-batch-size-0", lambda: run_cli("bench", "--batch-size", "0"),
         CliExit, ("exit 2", "--batch-size", "1 or more", "'0'")),
    Case("cli.bench-steps-0", lambda: run_cli("bench", "--steps", "0"), CliExit, ("exit 2", "--steps", "1 or more")),
    Case("cli.bench-threads-negative", lambda: run_cli("bench", "--threads", "-1"),
         CliExit, ("exit 2", "--threads", "1 or more")),
    Case("cli.bench-seconds-0", lambda: run_cli("bench", "--target", "shakespeare-char", "--seconds", "0"),
         CliExit, ("exit 2", "--seconds", "above 0")),
    Case("cli.bench-unknown-preset", lambda: run_cli("bench", "--presets", "nano,huge"),
         CliExit, ("exit 2", "unknown preset 'huge'", "nano, tiny, small")),
    Case("cli.bench-unknown-target", lambda: run_cli("bench", "--target", "imagenet"),
         CliExit, ("exit 2", "invalid choice", "shakespeare-char")),
    Case("cli.bench-missing-data", lambda: run_cli("bench", "--target", "shakespeare-char", "--data",
                                                   "/nonexistent/input.txt"),
         CliExit, ("exit 2", "/nonexistent/input.txt: no such file", "SSLEDU_DATA_DIR")),
    Case("cli.doctor-bad-quick", lambda: run_cli("doctor", "--no-corpora", env={"SSLEDU_QUICK": "maybe"}),
         CliExit, ("exit 1", "[FAIL] SSLEDU_QUICK maybe", "fix: unset SSLEDU_QUICK")),
    Case("cli.doctor-bad-widgets", lambda: run_cli("doctor", "--no-corpora", env={"SSLEDU_WIDGETS": "maybe"}),
         CliExit, ("exit 1", "[FAIL] SSLEDU_WIDGETS maybe", "fix: unset SSLEDU_WIDGETS")),
]

# ======================================================================================
# hub corpora (ssledu.data.hub): add rows here
# ======================================================================================


def mirror_with(folder: str, name: str, data: bytes):
    """load_corpus of a one-file mirror folder ``folder/name`` holding ``data``."""
    import tempfile

    from ssledu.data.hub import load_corpus

    root = tempfile.mkdtemp(prefix="ssledu-badmirror-")
    os.makedirs(os.path.join(root, folder))
    with open(os.path.join(root, folder, name), "wb") as fh:
        fh.write(data)
    return load_corpus(folder, data_dir=root)


def _hub():
    from ssledu.data import hub

    return hub


CASES += [
    Case("hub.load_corpus-typo", lambda: _hub().load_corpus("shakespear"),
         ValueError, ("unknown", "did you mean 'tiny_shakespeare'")),
    Case("hub.load_corpus-not-a-string", lambda: _hub().load_corpus(42), TypeError, ("must be a string",)),
    Case("hub.load_corpus-extra-argument", lambda: _hub().load_corpus("sst2", n_train=3),
         TypeError, ("no extra arguments", "toyworld")),
    Case("hub.load_corpus-unknown-split", lambda: _hub().load_corpus("digits", split="dev-2"),
         ValueError, ("no split 'dev-2'", "train, validation, test")),
    Case("hub.mirror-not-utf8", lambda: mirror_with("wikitext2", "test.txt", "ok\nna\u00efve\n".encode("latin-1")),
         ValueError, ("test.txt:2", "not utf-8", "re-save the file as utf-8")),
    Case("hub.mirror-row-missing-field", lambda: mirror_with("sst2", "dev.tsv", b"sentence\tlabel\ngood\t1\nbad\n"),
         ValueError, ("dev.tsv:3", "1 field", "header names 2", "add the missing field")),
    Case("hub.mirror-unquoted-comma", lambda: mirror_with("ag_news", "test.csv", b"text,label\nup, down,2\n"),
         ValueError, ("test.csv:2", "3 field", "double quotes")),
    Case("hub.mirror-bad-label", lambda: mirror_with("sst2", "dev.tsv", b"sentence\tlabel\ngood\tgreat\n"),
         ValueError, ("dev.tsv:2", "'great'", "negative", "positive")),
    Case("hub.mirror-wrong-files", lambda: mirror_with("sst2", "sentences.txt", b"hello\n"),
         FileNotFoundError, ("expected", "train.tsv", "sentences.txt")),
    Case("hub.offline-without-mirror", lambda: with_env("HF_HUB_OFFLINE", "1", lambda: _hub().load_corpus(
        "tinystories", data_dir=os.path.dirname(os.path.abspath(__file__)))),
         ConnectionError, ("HF_HUB_OFFLINE=1", "SSLEDU_DATA_DIR", "tinystories/", "<|endoftext|>")),
    Case("hub.timeout-setting", lambda: with_env("SSLEDU_HUB_TIMEOUT", "soon", _hub().hub_timeout),
         ValueError, ("SSLEDU_HUB_TIMEOUT", "seconds above 0", "'soon'")),
]

# ======================================================================================
# exercise checkers (ssledu.check): add rows here
# ======================================================================================


def _check():
    import ssledu.check

    return ssledu.check


CASES += [
    Case("check.answer-instead-of-function", lambda: _check().next_token_labels(([1], [2])),
         TypeError, ("takes your function", "without calling it", "tuple")),
    Case("check.unknown-exercise", lambda: _check().run_check("next_tokens", lambda ids: ids),
         ValueError, ("no exercise named 'next_tokens'", "next_token_labels")),
    Case("check.misspelt-checker", lambda: _check().next_token_lables,
         AttributeError, ("no exercise 'next_token_lables'", "did you mean 'next_token_labels'")),
    Case("check.exercise-kind", lambda: _check().Exercise(name="x", chapter="99", description="",
                                                          reference=lambda: 1, kind="quiz"),
         ValueError, ("kind must be 'function' or 'answer'", "'quiz'")),
]

# ======================================================================================
# training (ssledu.train): add rows here
# ======================================================================================
CASES += []


# ======================================================================================
# contrastive objectives (ssledu.objectives.contrastive): add rows here
# ======================================================================================


def _contrastive():
    from ssledu.objectives import contrastive

    return contrastive


def _emb(n: int = 4, d: int = 8) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))  # (n, d)


def _queue(dim: int = 8, size: int = 4):
    return _contrastive().MoCoQueue(dim, size, generator=torch.Generator().manual_seed(0))


CASES += [
    Case("contrastive.nt_xent-batch-of-one", lambda: _contrastive().nt_xent(_emb(1), _emb(1)),
         ValueError, ("batch size 1", "at least 2", "negatives")),
    Case("contrastive.nt_xent-zero-temperature", lambda: _contrastive().nt_xent(_emb(), _emb(), 0),
         ValueError, ("temperature must be a number > 0", "got 0", "0.5 (simclr")),
    Case("contrastive.info_nce-negative-temperature",
         lambda: _contrastive().info_nce(_emb(), _emb(), temperature=-0.1),
         ValueError, ("> 0", "-0.1")),
    Case("contrastive.nt_xent-mismatched-shapes", lambda: _contrastive().nt_xent(_emb(4, 8), _emb(4, 6)),
         ValueError, ("same shape", "(4, 8) and (4, 6)")),
    Case("contrastive.nt_xent-token-ids", lambda: _contrastive().nt_xent(ids(5, 4), ids(5, 4)),
         TypeError, ("float embeddings", "torch.int64", "encode the inputs first")),
    Case("contrastive.nt_xent-token-states", lambda: _contrastive().nt_xent(torch.zeros(4, 5, 8), torch.zeros(4, 5, 8)),
         ValueError, ("(n, d)", "(4, 5, 8)", "pool")),
    Case("contrastive.nt_xent-reduction", lambda: _contrastive().nt_xent(_emb(), _emb(), reduction="avg"),
         ValueError, ("reduction must be one of", "simclr", "'avg'")),
    Case("contrastive.simcse-one-sentence", lambda: _contrastive().simcse_loss(_emb(1), _emb(1)),
         ValueError, ("batch size 1", "at least 2", "moco")),
    Case("contrastive.moco_loss-not-a-queue", lambda: _contrastive().moco_loss(_emb(), _emb(), _emb()),
         TypeError, ("moco", "queue", "tensor")),
    Case("contrastive.queue-batch-larger-than-queue", lambda: _queue(8, 4).enqueue(_emb(8)),
         ValueError, ("8 keys", "queue of size 4", "at least 8")),
    Case("contrastive.queue-wrong-dim", lambda: _queue(16, 32).enqueue(_emb(4, 8)),
         ValueError, ("d=16", "(4, 8)")),
    Case("contrastive.queue-size-zero", lambda: _queue(8, 0),
         ValueError, ("size must be a positive integer", "0")),
    Case("contrastive.momentum-above-one",
         lambda: _contrastive().momentum_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), 1.5),
         ValueError, ("momentum", "[0, 1]", "1.5")),
    Case("contrastive.momentum-other-architecture",
         lambda: _contrastive().momentum_update(torch.nn.Linear(2, 3), torch.nn.Linear(3, 2)),
         ValueError, ("same parameters", "momentum_encoder(query_encoder)")),
    Case("contrastive.masking-p-above-one", lambda: _contrastive().random_masking(ids(5, 2), 1.2),
         ValueError, ("p must be a probability", "1.2")),
    Case("contrastive.deletion-deletes-all", lambda: _contrastive().random_deletion(ids(5, 2), 1.0),
         ValueError, ("p must be a probability in [0, 1)", "1.0")),
    Case("contrastive.masking-text", lambda: _contrastive().random_masking("the red circle"),
         TypeError, ("not a string", "encode the text first")),
    Case("contrastive.crop-min-above-max", lambda: _contrastive().span_crop(ids(5, 2), 0.9, 0.5),
         ValueError, ("min_fraction <= max_fraction", "0.9", "0.5")),
    Case("contrastive.synonyms-as-list", lambda: _contrastive().synonym_replacement(ids(5, 2), [[7, 8]]),
         TypeError, ("dict", "list", "synonym_ids(tokenizer, toyworld_synonyms())")),
    Case("contrastive.synonym-words-not-in-vocabulary",
         lambda: _contrastive().synonym_ids(tok(), _contrastive().toyworld_synonyms()),
         ValueError, ("not single tokens", "rests", "sits", "toyworld.vocabulary()")),
    Case("contrastive.dropout-views-without-dropout",
         lambda: _contrastive().dropout_views(torch.nn.Linear(4, 2), _emb(3, 4)),
         ValueError, ("identical", "no active dropout", "0.1")),
    Case("contrastive.images-as-ink-counts",
         lambda: _contrastive().augment_digits(torch.from_numpy(digits.load_digits_images()["images"][:2] * 16).long()),
         TypeError, ("float pixels", "torch.int64", "divide ink counts by 16")),
    Case("contrastive.images-rgb", lambda: _contrastive().random_shift(torch.zeros(2, 3, 8, 8)),
         ValueError, ("(b, h, w) or (b, 1, h, w)", "(2, 3, 8, 8)")),
    Case("contrastive.rotation-too-far", lambda: _contrastive().random_rotation(torch.zeros(2, 8, 8), 270),
         ValueError, ("max_degrees", "[0, 180]", "270")),
    Case("contrastive.cutout-larger-than-image", lambda: _contrastive().cutout(torch.zeros(2, 8, 8), 9),
         ValueError, ("cutout size", "[0, 8]", "9")),
]

# ======================================================================================
# denoising objectives (ssledu.objectives.denoise): add rows here
# ======================================================================================
from ssledu.objectives import denoise  # noqa: E402


class _NoMaskTokenizer:
    """A tokenizer-like object without a mask token."""

    mask_token = None
    mask_token_id = None


CASES += [
    Case("denoise.text_infilling-rate", lambda: denoise.text_infilling([5, 7, 8, 6], tok(), p=1.5),
         ValueError, ("p must", "(0, 1)", "got 1.5", "0.3")),
    Case("denoise.token_deletion-rate-zero", lambda: denoise.token_deletion([5, 7, 8, 6], tok(), p=0),
         ValueError, ("(0, 1)", "got 0")),
    Case("denoise.text_infilling-lambda", lambda: denoise.text_infilling([5, 7, 8, 6], tok(), poisson_lambda=-1),
         ValueError, ("poisson_lambda", "(0, 64]", "bart uses 3")),
    Case("denoise.text_infilling-empty", lambda: denoise.text_infilling([], tok()),
         ValueError, ("empty", "at least one token")),
    Case("denoise.text_infilling-string", lambda: denoise.text_infilling("the red circle", tok()),
         TypeError, ("string", "encode")),
    Case("denoise.text_infilling-batch", lambda: denoise.text_infilling(ids(5, b=2), tok()),
         ValueError, ("one sequence", "(2, 5)", "collator")),
    Case("denoise.text_infilling-word-ids", lambda: denoise.text_infilling([5, 7, 8, 6], tok(), word_ids=[0, 1]),
         ValueError, ("word_ids has 2", "4 tokens", "one word index per token")),
    Case("denoise.token_masking-no-mask-token", lambda: denoise.token_masking([5, 7, 6], _NoMaskTokenizer()),
         ValueError, ("no mask token", "train_tokenizer", "add_special_tokens")),
    Case("denoise.token_masking-generator", lambda: denoise.token_masking([5, 7, 8, 6], tok(), generator=0),
         TypeError, ("torch.Generator", "manual_seed")),
    Case("denoise.bart_noise-unknown", lambda: denoise.bart_noise([5, 7, 8, 6], tok(), ("shuffle",)),
         ValueError, ("unknown noise", "'shuffle'", "permute", "infill", "rotate")),
    Case("denoise.sentence_permutation-no-full-stop", lambda: denoise.sentence_permutation([5, 7, 8, 6], tok()),
         ValueError, ("'.'", "full_stop_id")),
    Case("denoise.span_corruption-no-sentinels", lambda: denoise.span_corruption([7, 8, 9, 10] * 5, tok()),
         ValueError, ("needs 1 sentinel", "has 0", "sentinels=")),
    Case("denoise.span_corruption-too-short", lambda: denoise.span_corruption([7], tok()),
         ValueError, ("at least 2", "got 1", "longer")),
    Case("denoise.t5_lengths-density", lambda: denoise.t5_lengths(568, noise_density=1.0),
         ValueError, ("noise_density", "(0, 1)", "0.15")),
    Case("denoise.t5_lengths-span", lambda: denoise.t5_lengths(568, mean_span_length=0.5),
         ValueError, ("mean_span_length", ">= 1", "t5 uses 3")),
    Case("denoise.BARTCollator-empty", lambda: denoise.BARTCollator(tok())([]),
         ValueError, ("non-empty list", "input_ids")),
    Case("denoise.BARTCollator-too-long", lambda: denoise.BARTCollator(tok(), max_length=4)([[5, *range(7, 12), 6]]),
         ValueError, ("at most 4", "max_length", "pack_blocks")),
    Case("denoise.BARTCollator-noise", lambda: denoise.BARTCollator(tok(), ("infil",)),
         ValueError, ("unknown noise", "infill")),
    Case("denoise.deletion_prediction-too-short", lambda: denoise.deletion_prediction([5, 7, 6], tok()),
         ValueError, ("at least 2 ordinary tokens", "got 1")),
    Case("denoise.deletion_no_skill_accuracy-rate", lambda: denoise.deletion_no_skill_accuracy(30, rate=2),
         ValueError, ("rate", "(0, 1)", "got 2")),
    Case("denoise.rtd_inputs-nothing-sampled", lambda: denoise.rtd_inputs(ids(4), torch.full((1, 4), -100)),
         ValueError, ("logits", "samples")),
    Case("denoise.electra_loss-weight", lambda: denoise.electra_loss(
        torch.zeros(1, 2, 3), torch.zeros(1, 2).long(), torch.zeros(1, 2), torch.zeros(1, 2).long(),
        discriminator_weight=-1), ValueError, ("discriminator_weight", ">= 0", "got -1", "50")),
    Case("denoise.seq2seq_loss-shapes", lambda: denoise.seq2seq_loss(torch.zeros(1, 3, 5), torch.zeros(1, 4).long()),
         ValueError, ("(1, 3, 5)", "(1, 4)", "(b, l, v)")),
]


def test_case_ids_are_unique():
    seen = [c.id for c in CASES]
    assert len(seen) == len(set(seen)), sorted({i for i in seen if seen.count(i) > 1})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning on the way is not what this table checks
        with pytest.raises(case.exc) as err:
            case.call()
    message = str(err.value).lower()
    if isinstance(err.value, KeyError) and err.value.args:
        message = str(err.value.args[0]).lower()
    missing = [w for w in case.mentions if w.lower() not in message]
    assert not missing, f"message lacks {missing}: {err.value}"


# --- behaviour that a table row cannot show -----------------------------------------------


def test_probe_restores_training_mode_after_an_error():
    model = bert()
    model.train()
    with pytest.raises(ValueError, match="out of range"):
        probe.frozen_features(model, tok(), TEXTS, layers=99)
    assert model.training


def test_models_special_ids_are_the_tokenizer_layout():
    assert models.SPECIAL_IDS is tokenize.SPECIAL_IDS
    for role, i in tokenize.SPECIAL_IDS.items():
        assert tokenize.SPECIAL_TOKENS[i] == f"[{role.upper()}]"
        assert getattr(tok(), f"{role}_token_id") == i
    assert tokenize.MASK_ID == tok().mask_token_id == 4


def test_pydocs_cache_with_unknown_keys_is_named_and_rebuilt(tmp_path, monkeypatch):
    import json

    cache = tmp_path / "pydocs-test.json"
    cache.write_text(json.dumps({"format": pydocs._FORMAT_VERSION,
                                 "records": [{"txt": "old", "module": "m", "category": "x"}]}))
    fresh = [{"text": "A paragraph.", "module": "json", "category": pydocs.CATEGORIES[0]}]
    monkeypatch.setattr(pydocs, "_cache_path", lambda: cache)
    monkeypatch.setattr(pydocs, "extract_pydocs", lambda: fresh)
    with pytest.warns(UserWarning) as record:
        assert pydocs._load_records() == fresh
    message = str(record[0].message)
    assert str(cache) in message and "rebuilding" in message and "'txt'" in message
    assert json.loads(cache.read_text())["records"] == fresh  # rewritten: the next load is quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pydocs._load_records() == fresh


# ======================================================================================
# multimodal objectives (ssledu.objectives.multimodal) and their builders
# ======================================================================================


def _mm():
    from ssledu.objectives import multimodal

    return multimodal


@functools.cache
def _tiny_clip():
    return models.clip(tok(), "nano", d_model=32, n_head=2)


CASES += [
    Case("multimodal.patchify-indivisible", lambda: _mm().patchify(torch.zeros(2, 3, 30, 30), 4),
         ValueError, ("30 x 30", "4 x 4 patches", "divides both sides")),
    Case("multimodal.random_masking-ratio-one", lambda: _mm().random_masking(torch.zeros(1, 4, 2), torch.rand(1, 4), 1.0),
         ValueError, ("mask_ratio", "(0, 1)", "got 1.0", "0.75")),
    Case("multimodal.random_masking-ratio-zero", lambda: _mm().random_masking(torch.zeros(1, 4, 2), torch.rand(1, 4), 0),
         ValueError, ("(0, 1)", "got 0")),
    Case("multimodal.text_features-out-of-vocabulary",
         lambda: _mm().text_features(_tiny_clip(), torch.tensor([[7, len(tok()) + 5, 6]])),
         ValueError, ("caption ids", "outside the vocabulary", f"{len(tok())} ids")),
    Case("multimodal.text_features-no-eos", lambda: _mm().text_features(_tiny_clip(), torch.tensor([[7, 8, 9]])),
         ValueError, ("no eos", "first eos", "tokenize_captions")),
    Case("multimodal.tokenize_captions-too-long",
         lambda: _mm().tokenize_captions(tok(), ["the red circle is big"], max_length=3),
         ValueError, ("max_length=3", "max_len")),
    Case("multimodal.clip_loss-unpaired", lambda: _mm().clip_loss(torch.rand(3, 4), torch.rand(2, 4), 1.0),
         ValueError, ("same shape", "(3, 4)", "(2, 4)", "pair")),
    Case("models.clip-patch", lambda: models.clip(tok(), "nano", image_size=32, patch_size=5),
         ValueError, ("image_size=32", "patch_size=5", "divides")),
    Case("models.clip-no-eos", lambda: models.clip(5, "nano"),
         ValueError, ("[eos]", "vocab_size >= 7")),
    Case("models.vit_mae-mask-ratio", lambda: models.vit_mae("nano", mask_ratio=1.0),
         ValueError, ("mask_ratio", "[0, 1)", "0.75")),
]


# --- probing, adaptation and interpretation (chapter 08) -------------------------------------

from ssledu import adapt, interpret  # noqa: E402

CASES_PROBING = [
    Case("probe.layer_probes-layer", lambda: probe.layer_probes(np.zeros((3, 4, 2)), [0, 1, 0, 1],
                                                                  np.zeros((3, 4, 2)), [0, 1, 0, 1], layers=[5]),
         ValueError, ("out of range", "3 hidden states", "0..2")),
    Case("probe.probe_accuracy-lengths", lambda: probe.probe_accuracy(np.zeros((4, 2)), [0, 1, 0],
                                                                      np.zeros((2, 2)), [0, 1]),
         ValueError, ("same number of rows", "4 feature rows")),
    Case("probe.probe_accuracy-one-class", lambda: probe.probe_accuracy(np.zeros((4, 2)), [1, 1, 1, 1],
                                                                        np.zeros((2, 2)), [0, 1]),
         ValueError, ("single class", "at least 2")),
    Case("probe.control_labels-lengths", lambda: probe.control_labels(["a", "b"], [0]),
         ValueError, ("same length", "1 labels", "2 words")),
    Case("probe.layer_features-level", lambda: probe.layer_features(bert(), tok(), TEXTS, level="token"),
         ValueError, ("level", "'sentence'", "'word'")),
    Case("adapt.encode_qa-span-outside", lambda: adapt.encode_qa(tok(), ["where ?"], ["the red circle"], [(2, 5)]),
         ValueError, ("outside", "3 words", "<= 2")),
    Case("adapt.encode_classification-one-class", lambda: adapt.encode_classification(tok(), TEXTS, [0, 0, 0]),
         ValueError, ("single class", "at least 2")),
    Case("adapt.EncoderWithHead-task", lambda: adapt.EncoderWithHead(bert(), "summarise", 2),
         ValueError, ("task", "classification", "qa")),
    Case("adapt.decode_span-max-len", lambda: adapt.decode_span(torch.zeros(1, 3), torch.zeros(1, 3), max_answer_len=0),
         ValueError, ("max_answer_len", "positive")),
    Case("interpret.attention_maps-sdpa", lambda: interpret.attention_maps(bert(), torch.tensor([[2, 7, 3]])),
         ValueError, ("eager", "sdpa", "set_attn_implementation")),
]


@pytest.mark.parametrize("case", CASES_PROBING, ids=lambda c: c.id)
def test_bad_input_probing(case):
    test_bad_input(case)


# --- contrastive: SimSiam, shuffling BN, retrieval (chapter 06) ------------------------------

CASES_CONTRASTIVE_CH06 = [
    Case("contrastive.simsiam_loss-shapes", lambda: _contrastive().simsiam_loss(_emb(4, 8), _emb(4, 8), _emb(4, 8), _emb(4, 6)),
         ValueError, ("same shape", "(4, 8)", "(4, 6)")),
    Case("contrastive.group_batch_norm-groups", lambda: _contrastive().group_batch_norm(_emb(6), 4),
         ValueError, ("groups", "batch size 6", "at least 2 rows")),
    Case("contrastive.same_label_recall-k", lambda: _contrastive().same_label_recall(_emb(4), [0, 1, 0, 1], ks=(4,)),
         ValueError, ("every k", "[1, 3]")),
    Case("contrastive.same_label_recall-labels", lambda: _contrastive().same_label_recall(_emb(4), [0, 1]),
         ValueError, ("one label per row", "2 labels")),
    Case("widgets.nearest_neighbours-empty-query",
         lambda: __import__("ssledu.widgets", fromlist=["x"]).nearest_neighbours("  ", {}, ["a", "b"], {}),
         ValueError, ("query", "non-empty")),
]


@pytest.mark.parametrize("case", CASES_CONTRASTIVE_CH06, ids=lambda c: c.id)
def test_bad_input_contrastive_ch06(case):
    test_bad_input(case)


# --- reasoning with scratchpads (chapter 10) -------------------------------------------------

def _sp():
    from ssledu.data import scratchpad

    return scratchpad


def _reasoning():
    from ssledu.objectives import reasoning

    return reasoning


CASES_SCRATCHPAD_CH10 = [
    Case("scratchpad.make_problems-digits", lambda: _sp().make_problems(5, 20, seed=0),
         ValueError, ("digits=20", "1 to 12 digits", "pick a value")),
    Case("scratchpad.parse_trace-malformed", lambda: _sp().parse_trace("5+8=13;13"),
         ValueError, ("step 0", "'5+8=13'", "a+b+c=ss")),
    Case("scratchpad.target_text-format", lambda: _sp().target_text(_sp().Problem(1, 2, 1), "cot"),
         ValueError, ("'cot'", "direct, scratchpad")),
    Case("reasoning.vote_accuracy-k", lambda: _reasoning().vote_accuracy([["1", "2"]], ["1"], [3]),
         ValueError, ("every k", "[1, 2]")),
]


@pytest.mark.parametrize("case", CASES_SCRATCHPAD_CH10, ids=lambda c: c.id)
def test_bad_input_scratchpad_ch10(case):
    test_bad_input(case)


# --- efficient pretraining and scaling laws (chapter 09) -------------------------------------

def _eff():
    from ssledu import efficient

    return efficient


def _scaling():
    from ssledu import scaling

    return scaling


CASES_EFFICIENT_CH09 = [
    Case("efficient.checkpoint_blocks-impl", lambda: _eff().checkpoint_blocks(gpt(), "fast"),
         ValueError, ("unknown impl 'fast'", "'ours', 'torch' or none")),
    Case("efficient.checkpoint_blocks-no-layers", lambda: _eff().checkpoint_blocks(torch.nn.Linear(2, 2)),
         ValueError, ("no transformer layers", "efficient.checkpoint(block, x)")),
    Case("efficient.fixed_batches-empty", lambda: _eff().fixed_batches([], 8),
         ValueError, ("lengths is empty", "at least one sequence")),
    Case("efficient.token_budget_batches-too-small", lambda: _eff().token_budget_batches([5, 40, 9], 32),
         ValueError, ("max_tokens=32", "sequence 1", "40 tokens", "at least 40")),
    Case("efficient.pack-block-size", lambda: _eff().pack([[7, 8, 9]], 1, sep_id=2),
         ValueError, ("block_size", ">= 2", "got 1")),
    Case("efficient.curriculum_order-schedule", lambda: _eff().curriculum_order([3, 1], schedule="easy"),
         ValueError, ("unknown schedule 'easy'", "sorted", "competence")),
    Case("scaling.fit_scaling_law-few-points",
         lambda: _scaling().fit_scaling_law([1e5, 1e6, 1e7], [1e6, 1e7, 1e8], [3.1, 2.6, 2.3]),
         ValueError, ("5 parameters", "at least 5", "got 3", "floor=")),
]


@pytest.mark.parametrize("case", CASES_EFFICIENT_CH09, ids=lambda c: c.id)
def test_bad_input_efficient_ch09(case):
    test_bad_input(case)
