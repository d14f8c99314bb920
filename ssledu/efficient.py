"""Where pretraining time and memory go, and what buys them back (chapter 09).

=================================  ===========================================================
name                               what it does
=================================  ===========================================================
``checkpoint(fn, *args)``          gradient checkpointing: run ``fn`` without keeping its
                                   activations, recompute them in backward (Chen et al. 2016)
``checkpoint_blocks(model, impl)`` run every transformer layer of a BERT / GPT-2 through
                                   ``checkpoint`` ("ours") or ``torch.utils.checkpoint``
``transformer_layers(model)``      the layers ``checkpoint_blocks`` wraps
``saved_activation_bytes(fn)``     bytes the autograd graph keeps for backward while ``fn()``
                                   runs: activation memory, measurable on a CPU
``peak_memory_bytes(fn)``          peak CUDA memory of ``fn()``; on a CPU the count above
``fixed_batches``                  index batches of a fixed number of rows
``token_budget_batches``           index batches of similar lengths under a token budget
``pack(seqs, block_size)``         concatenate sequences with a separator, cut into blocks
``padding_stats``                  real vs padded tokens of a batching, and the waste
``collate_indices``                padded ``input_ids`` + ``attention_mask`` per index batch
``curriculum_order``               example order easy-to-hard ("sorted", "competence")
                                   or "random", always a permutation
``competence(t, total)``           Platanios et al. 2019's sqrt competence schedule
``time_steps(step_fn, n)``         wall seconds of each call of a training step
``breakeven_steps``                steps after which compiling has paid for itself
=================================  ===========================================================

Scaling laws live in ``ssledu.scaling``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import random
import time
import types
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from ssledu.conventions import pad_batch

__all__ = [
    "checkpoint",
    "checkpoint_blocks",
    "transformer_layers",
    "saved_activation_bytes",
    "peak_memory_bytes",
    "fixed_batches",
    "token_budget_batches",
    "pack",
    "padding_stats",
    "collate_indices",
    "curriculum_order",
    "competence",
    "time_steps",
    "breakeven_steps",
]


# --- gradient checkpointing ------------------------------------------------------------------


def _autocast_states(devices: Sequence[str]) -> dict:
    return {d: (torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in devices}


class _Checkpoint(torch.autograd.Function):
    """Forward without a graph; backward recomputes the forward with one and backprops it."""

    @staticmethod
    def forward(ctx, function, preserve_rng_state, _dummy, *args):
        ctx.function = function
        ctx.preserve_rng_state = preserve_rng_state
        # Tensors go through save_for_backward (version-checked: an in-place change of an
        # input before backward raises instead of giving wrong gradients); the rest as is.
        ctx.tensor_slots = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        ctx.others = [None if isinstance(a, torch.Tensor) else a for a in args]
        ctx.save_for_backward(*(args[i] for i in ctx.tensor_slots))
        ctx.cuda_devices = sorted({a.device.index or 0 for a in args
                                   if isinstance(a, torch.Tensor) and a.is_cuda})
        # The RNG state *before* the forward: replaying from it draws the same dropout masks.
        if preserve_rng_state:
            ctx.cpu_rng = torch.get_rng_state()
            ctx.cuda_rng = [torch.cuda.get_rng_state(d) for d in ctx.cuda_devices]
        ctx.autocast = _autocast_states(["cpu"] + (["cuda"] if ctx.cuda_devices else []))
        with torch.no_grad():
            out = function(*args)
        return out

    @staticmethod
    def backward(ctx, *grad_outputs):
        if not torch.autograd._is_checkpoint_valid():
            raise RuntimeError(
                "checkpoint recomputes its part of the graph inside backward and writes the "
                "parameter gradients into .grad, so it works with loss.backward(), not with "
                "torch.autograd.grad(...); use torch.utils.checkpoint.checkpoint(..., "
                "use_reentrant=False) for autograd.grad"
            )
        args = list(ctx.others)
        for slot, saved in zip(ctx.tensor_slots, ctx.saved_tensors):
            # A fresh leaf per input, so the replayed graph ends at the inputs and their
            # gradients can be read off .grad and handed back to the outer graph.
            args[slot] = saved.detach().requires_grad_(saved.requires_grad)
        devices = [f"cuda:{d}" for d in ctx.cuda_devices]
        with torch.random.fork_rng(devices=devices, enabled=ctx.preserve_rng_state):
            # fork_rng puts the global RNG back afterwards: the replay does not shift the
            # random numbers the rest of training draws.
            if ctx.preserve_rng_state:
                torch.set_rng_state(ctx.cpu_rng)
                for d, state in zip(ctx.cuda_devices, ctx.cuda_rng):
                    torch.cuda.set_rng_state(state, d)
            with torch.enable_grad(), contextlib.ExitStack() as stack:
                for device, (enabled, dtype) in ctx.autocast.items():
                    stack.enter_context(torch.autocast(device, dtype=dtype, enabled=enabled))
                out = ctx.function(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        pairs = [(o, g) for o, g in zip(outs, grad_outputs)
                 if isinstance(o, torch.Tensor) and o.requires_grad and g is not None]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        grads = [a.grad if isinstance(a, torch.Tensor) and a.requires_grad else None for a in args]
        return (None, None, None, *grads)


def checkpoint(function: Callable, *args, preserve_rng_state: bool = True):
    """``function(*args)`` with gradient checkpointing (Chen et al. 2016, "Training Deep Nets
    with Sublinear Memory Cost"): the forward runs under ``no_grad`` and keeps only the
    inputs; backward runs ``function`` again with a graph and backpropagates through it.
    Memory: the inputs instead of every intermediate activation; time: one more forward.

    function: returns a tensor or a tuple of tensors; pass keyword arguments with
    ``functools.partial``. args: tensors (any shape) and other values. preserve_rng_state:
    replay the forward from the CPU (and CUDA) RNG state it started with, so dropout draws
    the same masks (as ``torch.utils.checkpoint`` does); autocast is replayed as well.
    Gradients flow to the tensor inputs and into the ``.grad`` of the parameters
    ``function`` uses, equal to the plain call's. This is the classic "reentrant" form:
    use ``loss.backward()`` (not ``torch.autograd.grad``) and one backward per forward.
    Without grad mode it is the plain call.
    """
    if not callable(function):
        raise TypeError(
            f"checkpoint needs a function (or module) to run as its first argument; got "
            f"{type(function).__name__}. Call it as checkpoint(block, hidden_states)"
        )
    if not torch.is_grad_enabled():
        return function(*args)
    # The classic form loses parameter gradients when no *input* requires grad (the output
    # would not require grad, so backward never reaches the recompute). A dummy input that
    # requires grad keeps the output attached to the graph in every case.
    dummy = torch.empty((), requires_grad=True)
    return _Checkpoint.apply(function, preserve_rng_state, dummy, *args)


def _torch_checkpoint(function: Callable, *args):
    from torch.utils.checkpoint import checkpoint as torch_ckpt

    return torch_ckpt(function, *args, use_reentrant=False)


_IMPLS = {"ours": checkpoint, "torch": _torch_checkpoint}
# Per-layer state that a cache would carry between two forwards; the replay in backward
# must not update it a second time (transformers drops it under checkpointing as well).
_CACHE_ARGS = {"cache": None, "layer_past": None, "past_key_values": None, "use_cache": False}


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer layers of a model, in order: GPT-2's ``transformer.h``,
    BERT's ``encoder.layer`` (any ``nn.ModuleList`` of the layer classes that transformers
    can checkpoint); a model with several stacks (BART) gives all of them."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # pragma: no cover - older transformers
        GradientCheckpointingLayer = ()
    layers = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) and all(
            isinstance(m, GradientCheckpointingLayer) for m in module
        ):
            layers.extend(module)
    if not layers:
        raise ValueError(
            f"found no transformer layers in {type(model).__name__}: checkpoint_blocks wraps the "
            "nn.ModuleList of layers of a transformers model (GPT-2 transformer.h, BERT "
            "encoder.layer), e.g. from ssledu.models.gpt(...) or ssledu.models.bert(...). For "
            "your own module call efficient.checkpoint(block, x) inside its forward"
        )
    return layers


@functools.lru_cache(maxsize=None)
def _signature(forward: Callable) -> inspect.Signature:
    return inspect.signature(forward)


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    """A layer's forward through the checkpoint chosen by ``checkpoint_blocks``.

    Bound to the layer instance (``types.MethodType``), so a deep copy of the model (an EMA
    teacher, a saved best model) rebinds it to the copied layer instead of running the
    original layer's weights.
    """
    forward = type(self).forward.__get__(self)
    if not (torch.is_grad_enabled() and self.training):
        return forward(*args, **kwargs)  # evaluation: nothing to save, nothing to replay
    signature = _signature(type(self).forward)
    named = dict(signature.bind(self, *args, **kwargs).arguments)
    named.pop(next(iter(signature.parameters)))  # self
    extra = next((n for n, p in signature.parameters.items() if p.kind is p.VAR_KEYWORD), None)
    named.update(named.pop(extra, {}) if extra else {})
    for key, value in _CACHE_ARGS.items():
        if key in named:
            named[key] = value
    # Tensors become checkpoint inputs (their gradients flow back); the rest is bound.
    tensor_names = [k for k, v in named.items() if isinstance(v, torch.Tensor)]
    fixed = {k: v for k, v in named.items() if k not in tensor_names}

    def call(*tensors):
        return forward(**fixed, **dict(zip(tensor_names, tensors)))

    return _IMPLS[self._checkpoint_impl](call, *(named[k] for k in tensor_names))


def checkpoint_blocks(model: nn.Module, impl: str | None = "ours"):
    """Run every transformer layer of ``model`` through gradient checkpointing.

    model: a transformers BERT / GPT-2 (e.g. ``ssledu.models.gpt(tok, "nano")``);
    impl: ``"ours"`` (``efficient.checkpoint``), ``"torch"``
    (``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``) or ``None``
    (plain layers again). Each layer's ``forward`` is wrapped on the instance; it
    checkpoints only in training mode with grad enabled, and drops the layer's KV cache
    arguments there (a replay would update the cache twice). Returns a context manager:
    ``with checkpoint_blocks(model): ...`` restores the plain layers on exit; called
    without ``with`` the change stays until ``checkpoint_blocks(model, None)``.
    """
    if impl is not None and impl not in _IMPLS:
        raise ValueError(f"unknown impl {impl!r}; use 'ours', 'torch' or None (plain layers)")
    layers = transformer_layers(model)

    def unwrap():
        for layer in layers:
            vars(layer).pop("forward", None)
            vars(layer).pop("_checkpoint_impl", None)

    unwrap()  # never wrap twice
    if impl is not None:
        for layer in layers:
            layer._checkpoint_impl = impl
            layer.forward = types.MethodType(_checkpointed_forward, layer)

    @contextlib.contextmanager
    def restore():
        try:
            yield model
        finally:
            unwrap()

    return restore()


def saved_activation_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors the autograd graph saves for backward while ``fn()`` runs.

    Every tensor autograd saves passes through ``torch.autograd.graph.saved_tensors_hooks``;
    each underlying storage is counted once (views share one), and parameters (and views of
    them, e.g. a transposed weight) are left out: they are in memory anyway. What remains is
    the activation memory that backward needs, measured the same way on any device.
    Gradient checkpointing shrinks the layers' share of it to their inputs.
    """
    if not callable(fn):
        raise TypeError(f"saved_activation_bytes needs a function of no arguments, e.g. "
                        f"lambda: model(**batch).loss; got {type(fn).__name__}")
    seen: dict[tuple, int] = {}

    def pack(t):
        if not (isinstance(t, nn.Parameter) or isinstance(getattr(t, "_base", None), nn.Parameter)):
            storage = t.untyped_storage()
            seen[(t.device, storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def peak_memory_bytes(fn: Callable[[], object], *, device: str | torch.device | None = None) -> int:
    """Memory ``fn()`` needs beyond what was allocated before it, in bytes.

    On CUDA: ``torch.cuda.max_memory_allocated`` during the call minus the allocation
    before it (activations, gradients, temporaries, everything the caching allocator
    hands out). On a CPU there is no such counter, so this falls back to
    ``saved_activation_bytes(fn)``: the activations kept for backward only, a smaller
    number than a CUDA peak but the part that checkpointing changes.
    device: None = CUDA when available, else the CPU fallback.
    """
    device = torch.device(device if device is not None else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        return saved_activation_bytes(fn)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


# --- batching and packing --------------------------------------------------------------------


def _check_lengths(lengths) -> list[int]:
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.tolist()
    if isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__len__"):
        raise TypeError(f"lengths must be a list of sequence lengths (ints); got {type(lengths).__name__}")
    lengths = list(lengths)
    if not lengths:
        raise ValueError("lengths is empty: pass the length of every sequence, e.g. "
                         "[len(s) for s in sequences] with at least one sequence")
    for i, n in enumerate(lengths):
        if hasattr(n, "__len__"):
            raise TypeError(f"lengths[{i}] is a sequence, not a length; pass "
                            "[len(s) for s in sequences] rather than the sequences")
        if isinstance(n, bool) or not float(n).is_integer() or n < 1:
            raise ValueError(f"lengths[{i}] = {n!r}: every length must be a whole number >= 1 "
                             "(drop empty sequences first)")
    return [int(n) for n in lengths]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def fixed_batches(lengths, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                  drop_last: bool = False) -> list[list[int]]:
    """Index batches of ``batch_size`` rows each, what a ``DataLoader`` makes.

    lengths: one length per sequence (only their number matters here). shuffle: a seeded
    random order (else 0, 1, 2, ...). The last batch is smaller unless ``drop_last``.
    Returns a list of index lists; padded to its longest row, a batch of mixed lengths
    wastes tokens (``padding_stats``).
    """
    n = len(_check_lengths(lengths))
    _positive_int(batch_size, "batch_size")
    order = list(range(n))
    if shuffle:
        random.Random(seed).shuffle(order)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def token_budget_batches(lengths, max_tokens: int, *, seed: int = 0, bucket_size: int = 1000,
                         shuffle: bool = True) -> list[list[int]]:
    """Index batches of similar lengths whose padded size stays within a token budget.

    The recipe of fairseq's ``--max-tokens`` and of bucketing iterators: shuffle the
    indices, sort each bucket of ``bucket_size`` of them by length (large buckets: similar
    lengths meet; buckets at all: some randomness stays), then fill batches in that order
    while ``n_rows * longest_row <= max_tokens`` (the size after padding). Short sequences
    thus travel in many-row batches, long ones in few-row batches. shuffle: the batches
    come in a seeded random order, not shortest first. Returns a list of index lists.
    """
    lengths = _check_lengths(lengths)
    _positive_int(max_tokens, "max_tokens")
    _positive_int(bucket_size, "bucket_size")
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[longest] > max_tokens:
        raise ValueError(
            f"max_tokens={max_tokens} is smaller than sequence {longest}, which has "
            f"{lengths[longest]} tokens: no batch could hold it. Raise max_tokens to at least "
            f"{lengths[longest]} or cut long sequences first"
        )
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket_size):
        bucket = sorted(order[start:start + bucket_size], key=lengths.__getitem__)
        batch, width = [], 0
        for i in bucket:
            grown = max(width, lengths[i])
            if batch and (len(batch) + 1) * grown > max_tokens:
                batches.append(batch)
                batch, grown = [], lengths[i]
            batch.append(i)
            width = grown
        batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


def pack(sequences, block_size: int, *, sep_id: int) -> torch.Tensor:
    """Concatenate sequences, each followed by ``sep_id``, and cut the stream into blocks.

    sequences: lists (or 1-D tensors) of token ids; sep_id: the separator (an [EOS] id,
    as GPT-2's training data separates documents with <|endoftext|>). Returns a LongTensor
    [n_blocks, block_size], no padding at all; the tokens after the last full block are
    dropped (fewer than ``block_size``, as in transformers' ``run_clm`` ``group_texts``).
    A block may span the end of one sequence and the start of the next: causal attention
    then reads across the separator, the usual price of packing.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an integer >= 2 (a block needs an input and a "
                         f"next token); got {block_size!r}")
    if isinstance(sep_id, bool) or not isinstance(sep_id, int) or sep_id < 0:
        raise ValueError(f"sep_id must be a non-negative token id (e.g. the [EOS] id); got {sep_id!r}")
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__") or not len(sequences):
        raise ValueError("sequences must be a non-empty list of token-id lists")
    stream: list[int] = []
    for seq in sequences:
        stream.extend(seq.tolist() if isinstance(seq, torch.Tensor) else seq)
        stream.append(sep_id)
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise ValueError(
            f"the sequences hold {len(stream)} tokens with separators, fewer than one block of "
            f"block_size={block_size}; lower block_size or pass more text"
        )
    from ssledu.conventions import check_ids

    blocks = check_ids(stream[:n_blocks * block_size], what="sequences")
    return blocks.view(n_blocks, block_size)  # (n_blocks, block_size)


def _check_batches(batches, n: int) -> None:
    for b, batch in enumerate(batches):
        if not len(batch):
            raise ValueError(f"batch {b} is empty; every batch needs at least one index")
        for i in batch:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"batch {b} holds index {i!r}, outside 0..{n - 1} "
                                 f"(there are {n} sequences)")


def padding_stats(lengths, batches) -> dict:
    """Real and padded token counts of a batching, and the fraction wasted on padding.

    lengths: one length per sequence; batches: index lists (``fixed_batches``, ...); each
    batch is padded to its longest row. Returns dict(real_tokens, padded_tokens, waste)
    with ``waste = 1 - real_tokens / padded_tokens`` (0 for packed blocks).
    """
    lengths = _check_lengths(lengths)
    batches = [list(b) for b in batches]
    if not batches:
        raise ValueError("batches is empty: pass at least one index batch")
    _check_batches(batches, len(lengths))
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return dict(real_tokens=real, padded_tokens=padded, waste=1.0 - real / padded)


def collate_indices(sequences, batches, pad_id: int, *, side: str = "right") -> Iterator[dict]:
    """Yield one padded batch per index list: dict(input_ids (B, L) long, attention_mask
    (B, L) long, 1 = real token), L the batch's longest row (``conventions.pad_batch``)."""
    n = len(sequences)
    for batch in batches:
        batch = list(batch)
        _check_batches([batch], n)
        yield pad_batch([sequences[i] for i in batch], pad_id, side=side)


# --- curriculum ------------------------------------------------------------------------------


def competence(t, total: float, *, c0: float = 0.01) -> float:
    """Platanios et al. 2019's square-root competence: the fraction of the data (easiest
    first) a model may see at step ``t`` of a curriculum of ``total`` steps,
    ``min(1, sqrt(t (1 - c0^2) / total + c0^2))``; c0 = 0.01 as in the paper."""
    if not total > 0:
        raise ValueError(f"total must be positive (the length of the curriculum); got {total!r}")
    if not 0 < c0 <= 1:
        raise ValueError(f"c0 (the competence at step 0) must be in (0, 1]; got {c0!r}")
    if t >= total:  # exactly 1 from there on (the formula rounds to 0.999...)
        return 1.0
    return min(1.0, math.sqrt(max(t, 0) * (1 - c0 ** 2) / total + c0 ** 2))


_SCHEDULES = ("sorted", "competence", "random")


def curriculum_order(scores, *, schedule: str = "sorted", seed: int = 0, c0: float = 0.01,
                     ramp: float = 1.0) -> list[int]:
    """An order of example indices from easy to hard by ``scores`` (lower = easier, e.g.
    the length in tokens). Always a permutation of ``range(len(scores))``.

    schedule: ``"sorted"`` (ascending score, ties in seeded random order);
    ``"competence"`` (Platanios et al. 2019, "Competence-based curriculum learning for
    neural machine translation"): at position t the next example is drawn at random from
    the not yet used ones among the easiest ``competence(t, ramp * n, c0=c0) * n``
    (always at least t + 1), so the pool of allowed difficulty grows like sqrt(t) and
    reaches the whole data after the fraction ``ramp`` of the order; ``"random"``: a
    seeded shuffle, the baseline.
    """
    if schedule not in _SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(_SCHEDULES)}")
    if isinstance(scores, torch.Tensor):
        scores = scores.tolist()
    if isinstance(scores, (str, bytes)) or not hasattr(scores, "__len__") or not len(scores):
        raise ValueError("scores must be a non-empty list of numbers, one per example "
                         "(e.g. [len(s) for s in sequences])")
    scores = list(scores)
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or math.isnan(s):
            raise ValueError(f"scores[{i}] = {s!r}: every score must be a number")
    if not 0 < ramp <= 1:
        raise ValueError(f"ramp (the fraction of the order until every example is allowed) "
                         f"must be in (0, 1]; got {ramp!r}")
    rng = random.Random(seed)
    n = len(scores)
    order = list(range(n))
    rng.shuffle(order)
    if schedule == "random":
        return order
    order.sort(key=scores.__getitem__)  # stable: ties keep the shuffled order
    if schedule == "sorted":
        return order
    result, pool, allowed = [], [], 0
    for t in range(n):
        k = max(t + 1, math.ceil(competence(t, ramp * n, c0=c0) * n))
        while allowed < min(k, n):  # examples that became easy enough join the pool
            pool.append(order[allowed])
            allowed += 1
        j = rng.randrange(len(pool))
        pool[j], pool[-1] = pool[-1], pool[j]
        result.append(pool.pop())
    return result


# --- torch.compile timing --------------------------------------------------------------------


def time_steps(step_fn: Callable[[], object], n: int, *, warmup: int = 1,
               sync: bool | None = None) -> list[float]:
    """Wall seconds of each of ``n`` calls of ``step_fn()``, after ``warmup`` untimed calls.

    The first call of a compiled function includes its compilation: time it alone
    (``warmup=0, n=1``), then the steady state. sync: wait for CUDA before reading the
    clock (default: when CUDA is initialised), since GPU kernels run asynchronously.
    ``torch.set_num_threads`` is left as the caller set it.
    """
    if not callable(step_fn):
        raise TypeError(f"step_fn must be a function of no arguments; got {type(step_fn).__name__}")
    _positive_int(n, "n")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a whole number >= 0; got {warmup!r}")
    if sync is None:
        sync = torch.cuda.is_available() and torch.cuda.is_initialized()
    for _ in range(warmup):
        step_fn()
    times = []
    for _ in range(n):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step_fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def breakeven_steps(compile_seconds: float, eager_step_s: float, compiled_step_s: float) -> float:
    """Steps after which compiling has paid for itself: ``compile_seconds / (eager_step_s -
    compiled_step_s)``; ``inf`` when the compiled step is not faster. compile_seconds: the
    one-off cost (first compiled call minus a compiled step)."""
    for name, value in (("compile_seconds", compile_seconds), ("eager_step_s", eager_step_s),
                        ("compiled_step_s", compiled_step_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0:
            raise ValueError(f"{name} must be a finite number of seconds >= 0; got {value!r}")
    saved = eager_step_s - compiled_step_s
    if saved <= 0:
        return math.inf
    return compile_seconds / saved
