"""fit(): the one training loop every chapter uses, built from small public pieces.

An objective is a data transform (``collate_fn``: list of examples -> the batch dict a
model takes), so one loop trains every self-supervised method of the course::

    history = fit(model, blocks, collate_fn=clm_batch, eval_data=val_blocks,
                  max_seconds=60, eval_every=100)
    history.to_frame()            # pandas: step, loss, lr, tokens_per_s, elapsed_s, val_loss

The loop (``_train_loop``, read it top to bottom) does, for each optimizer step: fetch
``grad_accum`` batches from a resumable ``BatchStream``, compute ``model(**batch).loss``
(or ``loss_fn(model, batch)``) under bf16 autocast where the GPU supports it, stop on a
NaN/inf loss, backpropagate, clip the gradient norm, take an AdamW step, advance the
warmup + cosine schedule, log; then show progress, call the callbacks, evaluate and write
a checkpoint when asked. Ctrl-C (KeyboardInterrupt) stops cleanly and returns the history.

The pieces, for a loop written by hand (a momentum encoder, two optimizers, ...):
``ssledu.data.blocks.make_loader`` / ``BatchStream`` (seeded, resumable data),
``ssledu.checkpoint`` (atomic save, load, fallback), ``ssledu.live`` (``Progress``,
``LivePlot``), and here ``param_groups``, ``cosine_lr``, ``evaluate``, ``rng_state`` /
``set_rng_state``, ``History``.

Checkpoints are folders that ``ModelClass.from_pretrained(folder)`` loads (safetensors)
plus ``trainer_state.pt`` (optimizer, schedule, step, data position, RNG states, history);
``fit(..., resume_from=folder)`` continues exactly where the run stopped: on the CPU the
resumed losses equal those of an uninterrupted run bit for bit.
"""

from __future__ import annotations

import copy
import functools
import math
import random
import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ssledu import checkpoint as ckpt
from ssledu import distributed
from ssledu.conventions import IGNORE_INDEX, context_length, eval_mode
from ssledu.data.blocks import BatchStream, make_loader
from ssledu.live import LivePlot, Progress, draw_history
from ssledu.live import in_notebook as _in_notebook  # a module name: tests stand in for Jupyter

__all__ = ["History", "FitState", "fit", "evaluate", "param_groups", "cosine_lr", "rng_state",
           "set_rng_state", "native_bf16"]

_STATE_FILE = ckpt.STATE_FILE
_PRECISIONS = ("auto", "bf16", "fp32")
# Resuming with other values of these would silently keep the old ones (the optimizer
# state holds lr, betas, weight decay) or change what a data position means.
_FIXED_ON_RESUME = ("batch_size", "grad_accum", "lr", "weight_decay", "betas")
_BUDGET = ("max_steps", "max_seconds", "epochs")
_STOPS = (None, "max_steps", "max_seconds", "epochs")  # budget_reached's answers, by number


# --- the record of a run ---------------------------------------------------------------


@dataclass
class History:
    """What ``fit`` returns: one dict per logged step and one per evaluation.

    ``steps``: dicts with ``step`` (1-based optimizer step), ``loss`` (mean over the steps
    since the previous record), ``lr`` (the rate that step used), ``tokens_per_s``,
    ``elapsed_s`` (training seconds so far, evaluation excluded), ``grad_norm`` (before
    clipping) and any metrics a ``loss_fn`` returned. ``evals``: dicts with ``step``,
    ``val_loss``, ``elapsed_s``, ``wall_s`` (seconds since the start, evaluation included)
    and ``eval_fn`` metrics.
    A batch's tags (``TaggedBatch.tags``, e.g. UniLM's ``mask_kind``) are recorded in its
    step's dict too (a window of several steps with different tags records "mixed").
    ``stopped``: why training ended ("max_steps", "max_seconds", "epochs",
    "interrupted", "callback"). ``checkpoint``: the last folder written, if any.
    """

    steps: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    stopped: str | None = None
    checkpoint: str | None = None

    @property
    def final_loss(self) -> float | None:
        """Training loss of the last logged step (None before any step)."""
        return self.steps[-1]["loss"] if self.steps else None

    @property
    def best_val_loss(self) -> float | None:
        """Lowest validation loss seen (None without evaluations)."""
        vals = [e["val_loss"] for e in self.evals if "val_loss" in e]
        return min(vals) if vals else None

    @property
    def elapsed_s(self) -> float:
        """Training seconds of the whole run (evaluation excluded)."""
        return self.steps[-1]["elapsed_s"] if self.steps else 0.0

    def to_frame(self):
        """A pandas DataFrame, one row per logged step, with eval columns merged on ``step``."""
        import pandas as pd

        steps = pd.DataFrame(self.steps)
        if not self.evals:
            return steps
        evals = pd.DataFrame(self.evals).drop(columns=["elapsed_s", "wall_s"], errors="ignore")
        if steps.empty:
            return evals
        return steps.merge(evals, on="step", how="outer").sort_values("step").reset_index(drop=True)

    def plot(self, title: str = "training loss"):
        """Loss curves (train per step, validation as points) as a matplotlib Figure."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.6), layout="constrained")
        draw_history(fig.add_subplot(), self, title)
        return fig

    def __repr__(self) -> str:
        def fmt(x):
            return "None" if x is None else f"{x:.4f}"

        return (
            f"History({len(self.steps)} logged steps, final_loss={fmt(self.final_loss)}, "
            f"best_val_loss={fmt(self.best_val_loss)}, stopped={self.stopped!r})"
        )


@dataclass
class FitState:
    """What a callback sees. ``callback(state)`` runs after every optimizer step
    (``state.event == "step"``) and after every evaluation (``"eval"``); set
    ``state.stop = True`` to end training (``history.stopped == "callback"``)."""

    event: str
    step: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    history: History
    last_eval: dict | None = None
    stop: bool = False
    _loss: object = None

    @property
    def loss(self) -> float | None:
        """The loss of the latest optimizer step."""
        return None if self._loss is None else float(self._loss)


# --- optimizer and schedule ------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float = 0.01, *, decay_embeddings: bool = True):
    """AdamW parameter groups: decay the weight matrices, not biases or norm weights.

    Returns ``[{"params": decayed, "weight_decay": weight_decay}, {"params": rest,
    "weight_decay": 0.0}]``. Every parameter with fewer than 2 dimensions (biases,
    LayerNorm gains and shifts, CLIP's temperature) and every parameter of a normalisation
    layer is exempt, as in GPT-2 / nanoGPT. Embedding matrices are decayed by default (as
    nanoGPT does; with tied input/output embeddings the embedding matrix *is* the output
    layer); ``decay_embeddings=False`` exempts them (minGPT's choice). Tied weights appear
    once; frozen parameters are left out.
    """
    norm_ids, emb_ids = set(), set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            emb_ids.add(id(module.weight))
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)) or (
            "norm" in type(module).__name__.lower()
        ):
            norm_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for p in model.parameters():  # yields each tied tensor once
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or id(p) in norm_ids or (not decay_embeddings and id(p) in emb_ids)
        (no_decay if exempt else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def cosine_lr(step: int, *, lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate used by optimizer step ``step + 1`` under linear warmup + cosine decay.

    The formula of ``transformers.get_cosine_schedule_with_warmup`` (which ``fit`` uses):
    ``lr * step / warmup`` while ``step < warmup``, then
    ``lr * 0.5 * (1 + cos(pi * (step - warmup) / (total - warmup)))``, reaching 0 at ``total``.
    """
    if step < warmup_steps:
        return lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


class _ClockCosine:
    """LR multiplier for a time budget: warmup, then cosine over the remaining *time*.

    With only ``max_seconds`` the number of steps is unknown and the machine's speed
    varies (a shared classroom server, a laptop on battery), so estimating a step count
    from the first steps would leave the rate high or zero at the deadline. Instead the
    decay follows the fraction of the budget used, so the rate reaches 0 exactly when the
    time runs out. Warmup lasts ``warmup_steps`` steps when given, else until 100 steps
    or 5 % of the budget, whichever comes first. Plain numbers only, so the scheduler's
    ``state_dict`` stores it for resuming.
    """

    def __init__(self, budget_s: float, warmup_steps: int | None):
        self.budget_s = float(budget_s)
        self.warmup_steps = warmup_steps
        self.elapsed_s = 0.0  # set by the loop before each scheduler.step()
        self.warm_end_s = None if warmup_steps != 0 else 0.0

    def __call__(self, step: int) -> float:
        t = self.elapsed_s
        if self.warm_end_s is None:
            if self.warmup_steps is not None:
                if step < self.warmup_steps:
                    return step / self.warmup_steps
            else:
                ramp = max(step / 100, t / (0.05 * self.budget_s))
                if ramp < 1.0:
                    return ramp
            self.warm_end_s = t
        progress = (t - self.warm_end_s) / max(1e-9, self.budget_s - self.warm_end_s)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


# --- batches ---------------------------------------------------------------------------


def _as_dict(batch) -> dict:
    """A loader's batch as the dict ``model(**batch)`` takes (a bare tensor is input_ids)."""
    if isinstance(batch, dict):
        return batch
    if isinstance(batch, torch.Tensor):
        return {"input_ids": batch}
    raise TypeError(
        f"a batch is a {type(batch).__name__}, not a dict; pass collate_fn= that returns the "
        "dict the model takes (e.g. {'input_ids': ..., 'labels': ...})"
    )


def _tags(batch) -> dict:
    """The str labels a TaggedBatch carries (not keys: the model never sees them)."""
    tags = getattr(batch, "tags", None)
    return tags if isinstance(tags, dict) else {}


def _to_device(batch, device: torch.device) -> dict:
    batch = _as_dict(batch)
    blocking = device.type == "cpu"  # non-blocking copies overlap with compute on a GPU
    return {k: (v.to(device, non_blocking=not blocking) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def _count_tokens(batch: dict) -> int:
    """Tokens in a (CPU) batch: attention_mask.sum() if 2-D, else input_ids.numel()."""
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return int(mask.sum()) if not mask.is_cuda else mask.numel()  # no sync for a GPU batch
    ids = batch.get("input_ids")
    if isinstance(ids, torch.Tensor):
        return ids.numel()
    first = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    return 0 if first is None else int(first.shape[0])  # images etc.: examples


def _model_limits(model) -> tuple[int | None, int | None]:
    """(vocabulary size, number of positions) of a model; None where it has no such limit."""
    vocab = None
    try:
        vocab = getattr(model.get_input_embeddings(), "num_embeddings", None)
    except (AttributeError, NotImplementedError):
        pass
    return vocab, context_length(model, default=None)


def _check_fits(batch: dict, limits) -> None:
    """Ids beyond the vocabulary or rows longer than the positions fail here, in words,
    instead of as torch's 'index out of range in self' deep inside the model."""
    vocab, positions = limits
    ids = batch.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.is_cuda or ids.numel() == 0 or ids.is_floating_point():
        return
    if vocab is not None:
        top, low = int(ids.max()), int(ids.min())
        if top >= vocab or low < 0:
            bad = top if top >= vocab else low
            raise ValueError(
                f"the data holds token id {bad} but the model's vocabulary has {vocab} ids "
                f"(0..{vocab - 1}); build the model from the tokenizer that encoded the data "
                f"(e.g. models.gpt(tok, ...)) or with vocab_size >= {top + 1}"
            )
    if positions is not None and ids.dim() >= 2 and ids.shape[-1] > positions:
        raise ValueError(
            f"the data has sequences of {ids.shape[-1]} tokens but the model reads at most "
            f"{positions} positions (its context length); cut the data into blocks of at most {positions} "
            f"(ssledu.data.blocks.pack_blocks(ids, block_size={positions})) or build the model "
            f"with max_len >= {ids.shape[-1]}"
        )


# --- RNG states ------------------------------------------------------------------------


def rng_state() -> dict:
    """The states of torch's, Python's, numpy's (and CUDA's) global RNGs, as plain tensors
    and tuples that ``torch.save(..., weights_only)`` can store."""
    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore states saved by :func:`rng_state` (CUDA states only where CUDA exists)."""
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _ForkedRNG:
    """Run a block with every global RNG seeded to ``seed`` and restore them afterwards."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import numpy as np

        self.saved = rng_state()
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)

    def __exit__(self, *exc):
        set_rng_state(self.saved)
        return False


# --- evaluation ------------------------------------------------------------------------


@functools.cache
def _cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux /proc/cpuinfo, macOS sysctl); empty when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:  # Apple silicon from M2 on reports FEAT_BF16
        import subprocess

        out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True,
                             text=True, timeout=2)
        return frozenset({"bf16"}) if out.stdout.strip() == "1" else frozenset()
    except (OSError, subprocess.SubprocessError):
        return frozenset()


def native_bf16(device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware.

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later). CPU: the AMX-BF16 or
    AVX512-BF16 instructions (Intel Sapphire Rapids, AMD Zen 4 and later) or Arm's BF16
    extension, read from the CPU flags, since ``torch.backends.cpu.get_cpu_capability()``
    says "AVX512" for CPUs with and without them. Elsewhere bf16 is emulated, and an
    autocast step is slower than fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool({"amx_bf16", "avx512_bf16", "bf16"} & _cpu_flags())
    return False


def _use_bf16(device: torch.device, precision: str | None) -> bool:
    """None (fit's default): bf16 on a CUDA GPU that has it, fp32 on every CPU (a CPU run then
    equals a plain fp32 loop bit for bit); "auto": bf16 wherever the hardware runs it natively."""
    if precision is None:
        return device.type == "cuda" and native_bf16(device)
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}; got {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def _autocast(device: torch.device, precision: str):
    """bf16 autocast where ``precision`` asks for it (see ``fit``), else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=_use_bf16(device, precision))


def _loss_of(model, batch, loss_fn):
    """(scalar loss tensor, metrics dict) for one batch."""
    if loss_fn is not None:
        result = loss_fn(model, batch)
        loss, metrics = result if isinstance(result, tuple) else (result, {})
    else:
        loss, metrics = model(**batch).loss, {}
    if loss is None:
        raise ValueError(
            f"{type(model).__name__} returned no loss: the batch has no labels "
            f"(keys: {', '.join(batch)}). Use a collate_fn that adds labels (an objective "
            "from ssledu.objectives) or pass loss_fn=(model, batch) -> loss"
        )
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError(f"the loss must be a scalar tensor; got {type(loss).__name__} "
                         f"{tuple(getattr(loss, 'shape', ()))}")
    return loss, metrics


def _eval_collate(collate_fn, seed: int):
    """The collate evaluation uses: a fixed-seed fork of a random collator, so every
    evaluation draws the same masks and the training collator's stream is untouched."""
    if collate_fn is None:
        return None
    if hasattr(collate_fn, "fork"):
        return collate_fn.fork(seed)
    if hasattr(collate_fn, "state_dict"):  # a private generator without fork(): leave it alone
        return copy.deepcopy(collate_fn)
    return collate_fn  # stateless, or the global RNG, which _ForkedRNG seeds and restores


def _eval_loader(eval_data, collate_fn, batch_size: int, seed: int, pin_memory: bool = False):
    """An unshuffled loader over ``eval_data`` whose collate is a fixed-seed fork."""
    if isinstance(eval_data, torch.utils.data.DataLoader):
        forked = _eval_collate(eval_data.collate_fn, seed)
        if forked is eval_data.collate_fn:
            return eval_data
        loader = copy.copy(eval_data)
        loader.collate_fn = forked
        return loader
    return make_loader(eval_data, batch_size, shuffle=False, collate_fn=_eval_collate(collate_fn, seed),
                       pin_memory=pin_memory)


@torch.no_grad()
def evaluate(model, eval_data, *, collate_fn=None, batch_size=32, max_batches=None,
             loss_fn=None, device=None, precision=None, seed=0) -> float:
    """Mean loss of ``model`` over ``eval_data`` (the mean of per-batch losses).

    eval_data: a tensor, dict of tensors, list or Dataset (batched by ``batch_size``,
    unshuffled, collated by ``collate_fn``) or a DataLoader. Runs in eval mode (no dropout)
    under ``no_grad``. Randomness is fixed by ``seed``: a random collator (``MLMCollator``,
    ``UniLMMixture``) is replaced by ``collate_fn.fork(seed)`` and the global RNGs are
    seeded and restored afterwards, so each call scores the same masks and the training
    run's random stream is untouched. ``max_batches`` caps the number of batches (the
    first ones). The model's train/eval mode is restored.
    """
    device = _resolve_device(device, model)
    loader = _eval_loader(eval_data, collate_fn, batch_size, seed)
    limits = _model_limits(model)
    total, n = None, 0
    with eval_mode(model), _ForkedRNG(seed):
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            batch = _as_dict(batch)
            _check_fits(batch, limits)
            with _autocast(device, precision):
                loss, _ = _loss_of(model, _to_device(batch, device), loss_fn)
            total = loss.detach().float() if total is None else total + loss.detach().float()
            n += 1
    if n == 0:
        raise ValueError("evaluation data yields no batch")
    return float(total / n)


def _resolve_device(device, model) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from ssledu import get_device

    return get_device() if device is None else get_device(str(device))


# --- logging ---------------------------------------------------------------------------


def _nan_message(step: int, value: float, last_good: dict, lr: float, what: str = "loss",
                 applied: bool = False) -> str:
    prev = (f"the last finite loss was {last_good['loss']:.4f} at step {last_good['step']}"
            if last_good.get("loss") is not None else "no step had a finite loss yet")
    where = ("It was noticed at a logging point after the update, so the weights may hold "
             "NaNs: reload the last checkpoint." if applied else "Training stopped before the "
             "weights took the bad step.")
    return (
        f"{what} is {value} at step {step}; {prev}. {where} Try a lower learning rate "
        f"(lr={lr:g} -> {lr / 3:.2g}), a longer warmup, or check the batch for labels that "
        f"are all {IGNORE_INDEX}"
    )


class _StepLog:
    """Per-step losses -> History records, one per ``log_every`` steps.

    ``add`` keeps the step's loss and gradient norm as tensors (on a GPU: no host sync);
    ``flush`` reads them all at once (a logging point), checks that they are finite,
    naming the first bad step, and closes the log windows that ended.
    """

    def __init__(self, history: "History", log_every: int, stop_at: int | None, lr: float,
                 deferred: bool):
        self.history, self.log_every, self.stop_at, self.lr = history, log_every, stop_at, lr
        self.deferred = deferred  # True: the update was applied before the check (GPU)
        self.pending = []  # (step, loss, grad_norm, lr, tokens, seconds, metrics, tags, elapsed)
        self.last_good = {"step": 0, "loss": history.final_loss}
        if history.steps:
            self.last_good["step"] = history.steps[-1]["step"]
        self._new_window()

    def _new_window(self):
        self.window = {"loss": 0.0, "n": 0, "tokens": 0.0, "t": 0.0, "metrics": {}, "tags": {}}

    def add(self, step, loss, grad_norm, lr, tokens, seconds, metrics, tags, elapsed_s):
        self.pending.append((step, loss, grad_norm, lr, tokens, seconds, metrics, tags, elapsed_s))

    def flush(self, final: bool = False) -> None:
        if self.pending:
            # one device-to-host copy for the whole group: the only sync of these steps
            values = torch.stack([torch.stack([p[1].float(), p[2].to(p[1].device).float()])
                                  for p in self.pending]).tolist() if self.deferred else None
        for i, (s, loss, gn, lr_s, tokens, dur, metrics, tags, elapsed) in enumerate(self.pending):
            value, norm = values[i] if values is not None else (float(loss), float(gn))
            for what, v in (("loss", value), ("gradient norm", norm)):
                if not math.isfinite(v):
                    del self.pending[: i]
                    raise FloatingPointError(_nan_message(s, v, self.last_good, self.lr, what,
                                                          applied=self.deferred))
            self.last_good.update(step=s, loss=value, lr=lr_s)
            w = self.window
            w["loss"] += value
            w["n"] += 1
            w["tokens"] += float(tokens)
            w["t"] += dur
            for k, v in {**metrics, "grad_norm": norm}.items():
                w["metrics"][k] = w["metrics"].get(k, 0.0) + float(v)
            for k, v in tags.items():
                w["tags"][k] = v if w["tags"].get(k, v) == v else "mixed"
            if s % self.log_every == 0 or s == self.stop_at:
                self._record(s, lr_s, elapsed)
        self.pending.clear()
        if final and self.window["n"]:  # close the last, partial log window
            self._record(self.last_good["step"], self.last_good.get("lr", self.lr), None)

    def _record(self, step, lr, elapsed):
        w, n = self.window, self.window["n"]
        record = {"step": step, "loss": w["loss"] / n, "lr": lr,
                  "tokens_per_s": w["tokens"] / max(w["t"], 1e-9),
                  "elapsed_s": elapsed if elapsed is not None else self._elapsed()}
        record.update({k: v / n for k, v in w["metrics"].items()})
        record.update(w["tags"])
        self.history.steps.append(record)
        self._new_window()

    def _elapsed(self):
        return self.history.steps[-1]["elapsed_s"] if self.history.steps else 0.0


# --- arguments -------------------------------------------------------------------------


def _check_number(name, value, *, positive=True, allow_none=False, example="1e-3"):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number such as {example}; got {value!r} "
                        f"({type(value).__name__})" + (": write it without quotes"
                                                       if isinstance(value, str) else ""))
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'zero or more'}; got "
                         f"{value!r} (e.g. {name}={example})")


def _check_int(name, value, *, allow_none: bool):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}; "
                         f"got {value!r}")


def _check_fit_args(a: dict) -> None:
    """Every argument of fit checked before any training (the names are fit's)."""
    if a["max_steps"] is None and a["max_seconds"] is None and a["epochs"] is None:
        raise ValueError("give a budget: max_steps=..., max_seconds=... or epochs=... (or several)")
    for name in ("max_steps", "epochs", "eval_every", "eval_batches", "checkpoint_every",
                 "warmup_steps"):
        if name == "warmup_steps" and a[name] == 0:
            continue
        _check_int(name, a[name], allow_none=True)
    for name in ("batch_size", "grad_accum", "log_every"):
        _check_int(name, a[name], allow_none=False)
    _check_number("lr", a["lr"], example="1e-3")
    _check_number("max_seconds", a["max_seconds"], allow_none=True, example="60")
    _check_number("weight_decay", a["weight_decay"], positive=False, example="0.01")
    _check_number("clip_norm", a["clip_norm"], allow_none=True, example="1.0")
    if a["live_plot"] not in ("auto", True, False):
        raise ValueError(f"live_plot must be 'auto', True or False; got {a['live_plot']!r}")
    if a["precision"] is not None and a["precision"] not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}; got {a['precision']!r}")
    if a["checkpoint_every"] is not None and a["checkpoint_dir"] is None:
        raise ValueError("checkpoint_every needs checkpoint_dir= (the folder to write to)")
    if a["resume_from"] is True and a["checkpoint_dir"] is None:
        raise ValueError("resume_from=True resumes from checkpoint_dir; give checkpoint_dir=")
    if a["eval_every"] is not None and a["eval_data"] is None:
        raise ValueError("eval_every needs eval_data= (the data to evaluate on)")
    for cb in a["callbacks"]:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables taking a FitState; got {cb!r}")


# --- one run: what fit builds, then the loop -------------------------------------------


class _Run:
    """The objects of one ``fit`` call and the steps of its loop, each a short method."""

    def __init__(self, model, train_data, a: dict):
        self.a = a
        self.model = model
        self.device = _resolve_device(a["device"], model)
        self.cuda = self.device.type == "cuda"
        if a["seed"] is not None:
            from ssledu import seed_everything

            seed_everything(a["seed"])
        self.data_seed = 0 if a["seed"] is None else a["seed"]
        model.to(self.device)
        # Under torchrun (a process group of K > 1): the forward runs through DDP, which
        # averages the gradients of the K processes in backward(); rank 0 alone prints and
        # writes checkpoints. self.model stays the plain model (save_pretrained, evaluation).
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.writer = self.rank == 0
        self.forward_model = distributed.wrap(model, self.device)
        if a["compile"]:
            self.forward_model = torch.compile(self.forward_model)
        self.limits = _model_limits(model)
        bf16 = _use_bf16(self.device, a["precision"])  # asked once, not at every batch
        self.autocast = lambda: torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)

        # data: one seeded, resumable stream; evaluation on a fixed-seed fork of the collate
        build = make_loader if self.world == 1 else distributed.shard_loader  # K processes: a share each
        loader = train_data if isinstance(train_data, torch.utils.data.DataLoader) else build(
            train_data, a["batch_size"], shuffle=a["shuffle"], seed=self.data_seed,
            collate_fn=a["collate_fn"] or _default_collate, pin_memory=self.cuda)
        self.collate = loader.collate_fn
        self.eval_loader = None
        if a["eval_data"] is not None:
            self.eval_loader = _eval_loader(a["eval_data"], a["collate_fn"] or _default_collate,
                                            a["batch_size"], self.data_seed, self.cuda)
        self.stream = BatchStream(loader)
        self.total_steps = a["max_steps"]
        if a["epochs"] is not None and self.stream.batches_per_epoch is not None:
            by_epochs = max(1, a["epochs"] * self.stream.batches_per_epoch // a["grad_accum"])
            self.total_steps = by_epochs if self.total_steps is None else min(self.total_steps, by_epochs)
        self.stream.max_epochs = a["epochs"] if self.total_steps is None else None

        self.optimizer, self.scheduler, self.clock = self._optimizer()
        self.history = History()
        self.step, self.train_s = 0, 0.0
        self.stop = self.in_update = False
        if a["checkpoint_dir"] is not None and self.writer:
            ckpt.check_writable(a["checkpoint_dir"])  # fail now, not after all the training
            ckpt.clean_orphans(a["checkpoint_dir"], keep_old=True)
        if a["resume_from"] is not None and a["resume_from"] is not False:
            self._resume()
        self.log = _StepLog(self.history, a["log_every"], self.total_steps, a["lr"], deferred=self.cuda)
        # On a GPU the losses are read in groups, at logging points, never every step.
        self.flush_every_s = 0.0 if not self.cuda else 0.5
        self.last_flush = time.perf_counter()
        self.t_start = time.perf_counter() - (self.history.evals[-1]["wall_s"] if self.history.evals
                                              else self.train_s)
        self.snap = self.snapshot()
        self._feedback()

    # ---- construction
    def _optimizer(self):
        a = self.a
        groups = param_groups(self.model, a["weight_decay"], decay_embeddings=a["decay_embeddings"])
        extra = {"fused": True} if self.cuda else {}
        optimizer = torch.optim.AdamW(groups, lr=a["lr"], betas=tuple(a["betas"]), **extra)
        clock = None
        if self.total_steps is not None:
            from transformers import get_cosine_schedule_with_warmup

            warmup = a["warmup_steps"]
            warm = warmup if warmup is not None else min(100, int(0.05 * self.total_steps))
            scheduler = get_cosine_schedule_with_warmup(optimizer, warm, self.total_steps)
        elif a["max_seconds"] is not None:
            clock = _ClockCosine(a["max_seconds"], a["warmup_steps"])
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, clock)
        else:  # epochs over a loader without a length: warmup, then constant
            warm = a["warmup_steps"] if a["warmup_steps"] is not None else 100
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / max(1, warm)))
        return optimizer, scheduler, clock

    def _feedback(self):
        a = self.a
        notebook = _in_notebook()
        self.plot = None
        if self.writer and (a["live_plot"] is True or (a["live_plot"] == "auto" and notebook)):
            vocab = self.limits[0]
            ref = math.log(vocab) if vocab and a["loss_fn"] is None else None
            try:
                self.plot = LivePlot(self.total_steps, reference=ref, notebook=True,
                                     reference_label=None if ref is None else
                                     f"ln |V| = {ref:.2f} (a uniform guess)")
            except ImportError:
                self.plot = None
        self.progress = Progress(self.total_steps, initial=self.step, notebook=notebook) \
            if a["progress"] and self.writer else None

    def _config(self) -> dict:
        return {k: (list(self.a[k]) if k == "betas" else self.a[k]) for k in _FIXED_ON_RESUME + _BUDGET}

    def _resume(self):
        a = self.a
        if a["resume_from"] is True:
            folder = ckpt.find_checkpoint(a["checkpoint_dir"])
            if folder is None:
                return  # nothing written yet: a fresh start
        else:
            folder = ckpt.find_checkpoint(a["resume_from"], required=True)
        state = ckpt.load_checkpoint(folder, self.model, required_keys=(
            "step", "train_s", "optimizer", "scheduler", "position", "rng", "history"))
        self._check_config(state.get("config") or {}, folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.train_s = state["step"], state["train_s"]
        self.history.steps = list(state["history"]["steps"])
        self.history.evals = list(state["history"]["evals"])
        if hasattr(self.collate, "load_state_dict") and state.get("collate") is not None:
            self.collate.load_state_dict(state["collate"])
        self.stream.load_state_dict(state["position"])
        set_rng_state(state["rng"])  # after the data stream replayed its epoch start

    def _check_config(self, saved: dict, folder):
        now = self._config()
        changed = [k for k in _FIXED_ON_RESUME if k in saved and saved[k] != now[k]]
        if changed:
            what = ", ".join(f"{k}={saved[k]!r} there, {now[k]!r} here" for k in changed)
            raise ValueError(
                f"the checkpoint {folder} was trained with other settings ({what}); the "
                "optimizer state would keep the old values silently. Pass the checkpoint's "
                "values to continue it, or start a new run without resume_from= to use new ones"
            )
        moved = [k for k in _BUDGET if k in saved and saved[k] != now[k]]
        if moved:
            what = ", ".join(f"{k}={saved[k]!r} -> {now[k]!r}" for k in moved)
            warnings.warn(f"resuming {folder} with another budget ({what}): the learning-rate "
                          "schedule is recomputed for the new budget from this step on, so the "
                          "run differs from one that had this budget from the start", stacklevel=4)

    # ---- the steps of the loop
    def budget_reached(self) -> str | None:
        """Why to stop before the next step (None: go on). With K processes rank 0's clock
        decides for all: a process that stopped alone would leave the others waiting."""
        a = self.a
        reason = None
        if self.total_steps is not None and self.step >= self.total_steps:
            reason = "max_steps" if a["max_steps"] is not None and self.step >= a["max_steps"] else "epochs"
        elif a["max_seconds"] is not None and self.train_s >= a["max_seconds"]:
            reason = "max_seconds"
        if self.world > 1:
            reason = _STOPS[distributed.agree(_STOPS.index(reason))]
        return reason

    def next_batches(self) -> list[dict]:
        """Up to ``grad_accum`` batches (fewer when the last epoch ends)."""
        batches = []
        for _ in range(self.a["grad_accum"]):
            batch = self.stream.next()
            if batch is None:
                break
            batches.append(batch)
        return batches

    def forward_backward(self, batches):
        """Backpropagate the mean loss of the batches; return (loss tensor, metrics, tokens, tags)."""
        total, metrics, tokens, tags = None, {}, 0, {}
        for batch in batches:
            tags.update(_tags(batch))
            batch = _as_dict(batch)
            _check_fits(batch, self.limits)
            tokens += _count_tokens(batch)
            with self.autocast():
                loss, m = _loss_of(self.forward_model, _to_device(batch, self.device), self.a["loss_fn"])
            if not self.cuda:  # on the CPU reading the loss costs nothing: stop before backward
                self._check_finite(loss, "loss")
            # each micro-batch weighs 1/grad_accum: a short last step keeps the same scale
            (loss / self.a["grad_accum"]).backward()
            total = loss.detach() if total is None else total + loss.detach()
            for k, v in m.items():
                metrics[k] = metrics.get(k, 0.0) + (v.detach() if isinstance(v, torch.Tensor) else v)
        n = len(batches)
        if self.world > 1:  # the loss and speed of the whole global batch, on every process
            total, tokens = distributed.mean_over_ranks(total), int(distributed.global_count(tokens))
        return total / n, {k: v / n for k, v in metrics.items()}, tokens, tags

    def clip_gradients(self) -> torch.Tensor:
        """Gradient norm before clipping (a tensor: no host sync)."""
        clip = self.a["clip_norm"]
        norm = (torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip) if clip is not None
                else _grad_norm(self.model))
        if not self.cuda:
            self._check_finite(norm, "gradient norm")
        return norm

    def _check_finite(self, value: torch.Tensor, what: str):
        v = float(value.detach())
        if not math.isfinite(v):
            self.log.flush()
            raise FloatingPointError(_nan_message(self.step + 1, v, self.log.last_good, self.a["lr"], what))

    def update(self, t0: float) -> float:
        """AdamW step, clear the gradients, advance the schedule; return the step's seconds."""
        self.in_update = True  # Ctrl-C now would leave half-updated weights: save nothing
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - t0
        self.train_s += seconds
        if self.clock is not None:
            self.clock.elapsed_s = self.train_s  # the clock schedule follows training time
        self.scheduler.step()
        self.step += 1
        if self.a["checkpoint_dir"] is not None and self.writer:  # the state after this step, for Ctrl-C
            self.snap = self.snapshot()
        self.in_update = False
        return seconds

    def after_step(self, loss):
        """Logging point, progress, plot, callbacks, evaluation, checkpoint."""
        a, now = self.a, time.perf_counter()
        if now - self.last_flush >= self.flush_every_s:
            self.log.flush()
            self.last_flush = now
        if self.progress is not None and self.history.steps:
            last = self.history.steps[-1]
            self.progress.update(self.step, loss=last["loss"], tokens_per_s=last["tokens_per_s"],
                                 elapsed_s=self.train_s)
        if self.plot is not None and self.history.steps:
            self.plot.update(self.history)
        self._callbacks(FitState("step", self.step, self.model, self.optimizer, self.scheduler,
                                 self.history, _loss=loss))
        if a["eval_every"] is not None and self.step % a["eval_every"] == 0:
            record = self.run_eval()
            self._callbacks(FitState("eval", self.step, self.model, self.optimizer, self.scheduler,
                                     self.history, last_eval=record, _loss=loss))
        if a["checkpoint_every"] is not None and self.step % a["checkpoint_every"] == 0:
            self.save()  # the state now, after the evaluation and callbacks of this step

    def _callbacks(self, state: FitState):
        for cb in self.a["callbacks"]:
            cb(state)
        self.stop |= state.stop

    def run_eval(self) -> dict:
        self.log.flush()
        a = self.a
        val = evaluate(self.model, self.eval_loader, max_batches=a["eval_batches"], loss_fn=a["loss_fn"],
                       device=self.device, precision=a["precision"], seed=self.data_seed)
        record = {"step": self.step, "val_loss": val}
        if a["eval_fn"] is not None:
            with eval_mode(self.model), torch.no_grad(), _ForkedRNG(self.data_seed):
                record.update(a["eval_fn"](self.model, _eval_loader(
                    self.eval_loader, None, a["batch_size"], self.data_seed)) or {})
        record.update(elapsed_s=self.train_s, wall_s=time.perf_counter() - self.t_start)
        self.history.evals.append(record)
        return record

    # ---- checkpoints
    def snapshot(self) -> dict:
        """What continues the run exactly from here (the weights and optimizer are saved live)."""
        return {
            "format": 2,
            "step": self.step,
            "train_s": self.train_s,
            "position": self.stream.state_dict(),
            "rng": rng_state(),
            "collate": self.collate.state_dict() if hasattr(self.collate, "state_dict") else None,
            "config": self._config(),
        }

    def save(self, snap: dict | None = None):
        """Write a checkpoint of the state now (or of ``snap``); keep the History on failure."""
        self.log.flush()
        if not self.writer:  # K processes hold the same weights: rank 0 writes them
            return
        state = dict(snap or self.snapshot(), optimizer=self.optimizer.state_dict(),
                     scheduler=self.scheduler.state_dict(),
                     history={"steps": list(self.history.steps), "evals": list(self.history.evals)})
        try:
            self.history.checkpoint = str(ckpt.save_checkpoint(self.a["checkpoint_dir"], self.model, state))
        except OSError as err:
            new = ckpt._with_message(err, f"{err.args[-1]}. Training stopped at step {self.step}; "
                                     "the History of the run so far is attached to this error "
                                     "as err.history")
            new.history = self.history
            raise new from err

    def finish(self):
        """After the last step: close the log, evaluate at the end, write the last checkpoint."""
        self.log.flush(final=True)
        if self.eval_loader is not None and (not self.history.evals
                                             or self.history.evals[-1]["step"] != self.step):
            self.run_eval()
        if self.a["checkpoint_dir"] is not None:
            self.save()

    def close_feedback(self):
        if self.progress is not None:
            if self.history.steps:
                last = self.history.steps[-1]
                self.progress.update(self.step, loss=last["loss"], tokens_per_s=last["tokens_per_s"],
                                     elapsed_s=self.train_s, force=False)
            self.progress.close(self.history.stopped)
        if self.plot is not None:
            self.plot.close(self.history)


def _train_loop(run: _Run) -> History:
    """The loop of ``fit``: one optimizer step per turn, then what follows a step."""
    history, model = run.history, run.model
    model.train()
    try:
        while (reason := run.budget_reached()) is None:
            t0 = time.perf_counter()
            batches = run.next_batches()  # grad_accum batches from the resumable stream
            if not batches:
                reason = "epochs"
                break
            loss, metrics, tokens, tags = run.forward_backward(batches)
            grad_norm = run.clip_gradients()
            lr = run.optimizer.param_groups[0]["lr"]  # the rate this step uses
            seconds = run.update(t0)  # AdamW step, schedule, step += 1
            run.log.add(run.step, loss, grad_norm, lr, tokens, seconds, metrics, tags, run.train_s)
            run.after_step(loss)  # log point, progress, plot, callbacks, evaluation, checkpoint
            if run.stop:
                reason = "callback"
                break
        history.stopped = reason
        run.finish()  # close the log, final evaluation, final checkpoint
    except KeyboardInterrupt:
        history.stopped = "interrupted"
        try:
            run.log.flush(final=True)
        except FloatingPointError:
            pass
        if run.a["checkpoint_dir"] is not None and run.in_update:
            warnings.warn("interrupted during a parameter update: no checkpoint written now; "
                          f"the last one is {history.checkpoint}")
        elif run.a["checkpoint_dir"] is not None:
            run.save(run.snap)  # the state after the last whole step; a step in progress is dropped
    except FloatingPointError as err:
        err.history = history
        raise
    finally:
        run.close_feedback()
        model.eval()
    return history


def _default_collate(examples):
    """Stack examples; a plain tensor batch becomes ``{"input_ids": batch}``."""
    return _as_dict(torch.utils.data.default_collate(examples))


def _grad_norm(model) -> torch.Tensor:
    """L2 norm of all gradients together (what clip_grad_norm_ measures)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def fit(
    model,
    train_data,
    *,
    collate_fn=None,
    eval_data=None,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    betas=(0.9, 0.95),
    warmup_steps: int | None = None,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    epochs: int | None = None,
    grad_accum: int = 1,
    clip_norm: float | None = 1.0,
    eval_every: int | None = None,
    eval_batches: int | None = None,
    eval_fn=None,
    loss_fn=None,
    device=None,
    precision: str | None = None,
    compile: bool = False,
    seed: int | None = 0,
    shuffle: bool = True,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume_from=None,
    live_plot="auto",
    progress: bool = True,
    log_every: int = 1,
    callbacks=(),
    decay_embeddings: bool = True,
) -> History:
    """Train ``model`` on ``train_data``; return a :class:`History`.

    Data: ``train_data`` is a DataLoader (used as is) or a Dataset / list / tensor that
    becomes a loader of ``batch_size`` examples collated by ``collate_fn`` (the objective:
    list of examples -> batch dict; default: stack, a tensor batch becomes
    ``{"input_ids": ...}``). Epoch ``e`` is shuffled with seed ``(seed, e)``; when the data
    runs out a new epoch starts until a budget ends.

    Budget (at least one): ``max_steps`` optimizer steps, ``max_seconds`` of training time
    (evaluation excluded), ``epochs`` passes over the data; the first reached stops.

    Optimisation: AdamW (``betas`` (0.9, 0.95) as GPT-3; decay groups from
    :func:`param_groups`), ``grad_accum`` batches per step, gradient norm clipped to
    ``clip_norm`` (None: off), linear warmup + cosine decay to 0 from
    ``transformers.get_cosine_schedule_with_warmup`` over the step budget (``warmup_steps``
    default: min(100, 5 % of the steps)); with only ``max_seconds`` the cosine follows the
    clock (see ``_ClockCosine``: the rate reaches 0 when the time is up). Note the
    transformers schedule gives step 1 a rate of 0 when warming up.

    Loss: ``model(**batch).loss`` or ``loss_fn(model, batch)`` -> loss or (loss, metrics).
    A NaN/inf loss raises ``FloatingPointError`` naming the step (on the CPU before the
    weights see it; on a GPU at the next logging point, since reading the loss every step
    would stall the GPU). Token ids beyond the model's vocabulary or rows longer than its
    positions raise a ValueError before the step. Evaluation: every ``eval_every`` steps and at the end, the mean loss over
    ``eval_batches`` batches of ``eval_data`` (see :func:`evaluate`: a fixed-seed fork of a
    random collate, so evaluating never changes the training losses), plus
    ``eval_fn(model, eval_loader) -> dict`` when given.

    Device and speed: ``device`` (default ``ssledu.get_device()``); ``precision``: None
    (default: bf16 autocast on a CUDA GPU that supports it, else fp32, so CPU runs stay
    bit-for-bit those of a plain fp32 loop), "auto" (bf16 autocast wherever the hardware
    runs bf16 natively, see :func:`native_bf16`: also a CPU with AMX / AVX512-BF16),
    "bf16" or "fp32"; ``compile=True`` wraps the model in ``torch.compile``.

    Feedback (``ssledu.live``): ``progress`` shows ``step k/n | loss | tok/s | time``, in a
    notebook as a line updated in place whose stored text is the final state, in a
    terminal as a tqdm bar; ``live_plot`` "auto" draws a loss plot (axes of the budget,
    ln |V| reference) updated about once a second inside a notebook, nothing in a terminal.

    Checkpoints (``ssledu.checkpoint``): with ``checkpoint_dir`` (checked writable before
    training), every ``checkpoint_every`` steps (after that step's evaluation), on Ctrl-C and
    at the end, the folder is atomically replaced by ``save_pretrained`` files +
    ``trainer_state.pt``; a failed save (full disk) raises an OSError naming the folder,
    with the History attached as ``err.history``. ``resume_from=folder`` (or ``True``:
    ``checkpoint_dir`` when it holds one; both fall back to the copy an interrupted save
    left) restores weights, optimizer, schedule, data position, RNG and collator states and
    continues; the history includes the earlier steps. Resuming with another
    ``batch_size``, ``grad_accum``, ``lr``, ``weight_decay`` or ``betas`` is refused (the
    optimizer state would keep the old ones); another budget gives a warning. Exact on the CPU when fit built the loader, or when a given
    DataLoader's order comes from its own seeded generator or the global RNG; a
    ``collate_fn`` with its own generator is restored if it has ``state_dict`` /
    ``load_state_dict`` (``MLMCollator``, ``UniLMMixture`` do). With only ``max_seconds`` the schedule depends on the clock, so
    runs are not bit-for-bit repeatable.

    Several processes (``torchrun``; see ``ssledu.distributed``): while a process group of
    K > 1 runs, the model trains through DDP (gradients averaged over the processes), a
    loader that fit builds gives each process its ``batch_size`` rows of every global batch
    of K x ``batch_size`` (a DataLoader you pass is used as is: build it with
    ``distributed.shard_loader``), the logged loss and tokens/s are those of the global
    batch, rank 0's clock ends a time budget for all, and only rank 0 prints, plots and
    writes checkpoints.

    Callbacks: ``callback(state: FitState)`` after every step and evaluation; set
    ``state.stop = True`` to end the run. ``seed`` (None: leave the RNGs alone) seeds
    torch / random / numpy at the start (dropout, random masking) and the data order.
    The model is left in eval mode.
    """
    args = dict(locals())
    _check_fit_args(args)
    run = _Run(model, train_data, args)  # device, data stream, optimizer, resume, feedback
    return _train_loop(run)


