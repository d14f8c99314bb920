"""fit(): the one training loop every chapter uses.

An objective is a data transform (``collate_fn``: list of examples -> the batch dict a
model takes), so one loop trains every self-supervised method of the course::

    history = fit(model, blocks, collate_fn=clm_batch, eval_data=val_blocks,
                  max_seconds=60, eval_every=100)
    history.to_frame()            # pandas: step, loss, lr, tokens_per_s, elapsed_s, val_loss

What the loop does, in order, for each optimizer step: fetch ``grad_accum`` batches, move
them to the device (pinned memory + non-blocking copies on CUDA), compute
``model(**batch).loss`` (or ``loss_fn(model, batch)``) under bf16 autocast where the GPU
supports it, stop on a NaN/inf loss before it reaches the weights, backpropagate, clip the
gradient norm, take an AdamW step, advance the warmup + cosine schedule, log, evaluate,
call the callbacks and write a checkpoint when asked. Ctrl-C (KeyboardInterrupt) stops
cleanly and returns the history so far.

Checkpoints are folders that ``ModelClass.from_pretrained(folder)`` loads (safetensors)
plus ``trainer_state.pt`` (optimizer, schedule, step, data position, RNG states, history);
``fit(..., resume_from=folder)`` continues exactly where the run stopped: on the CPU the
resumed losses equal those of an uninterrupted run bit for bit.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["History", "FitState", "fit", "evaluate", "param_groups", "cosine_lr"]

_STATE_FILE = "trainer_state.pt"
_PRECISIONS = ("auto", "bf16", "fp32")


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
        _draw_history(fig.add_subplot(), self, title)
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


# --- data ------------------------------------------------------------------------------


class _EpochBatches(torch.utils.data.Sampler):
    """Batches of indices; epoch ``e`` is a permutation seeded by ``(seed, e)``.

    ``set_epoch(e, skip=k)`` starts epoch ``e`` at its ``k``-th batch without touching the
    skipped examples, which is how a resumed run finds its place in the data.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0):
        self.epoch, self.skip = epoch, skip

    def __len__(self):
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        for b in range(self.skip, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


def _default_collate(examples):
    """Stack examples; a plain tensor batch becomes ``{"input_ids": batch}``."""
    return _as_dict(torch.utils.data.default_collate(examples))


def _make_loader(data, batch_size, collate_fn, shuffle, seed, pin_memory, drop_last=False):
    """(DataLoader, sampler or None). A DataLoader passes through untouched."""
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(data, DataLoader):
        return data, None
    if isinstance(data, IterableDataset):
        loader = DataLoader(data, batch_size=batch_size, collate_fn=collate_fn or _default_collate,
                            pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
        return loader, None
    try:
        n = len(data)
    except TypeError:
        raise TypeError(
            f"train/eval data must be a DataLoader, a Dataset, a list or a tensor; got "
            f"{type(data).__name__}"
        ) from None
    if n == 0:
        raise ValueError("the data set is empty; check the split or the filtering that built it")
    sampler = _EpochBatches(n, batch_size, shuffle, seed, drop_last)
    # A private generator: creating an iterator then draws nothing from the global RNG.
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate_fn or _default_collate,
                        pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
    return loader, sampler


def _loader_generators(loader) -> list:
    """The torch.Generators that decide a user DataLoader's order (deduplicated)."""
    found = []
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


class _Stream:
    """An endless stream of batches over epochs that knows its position (epoch, offset)."""

    def __init__(self, loader, sampler):
        self.loader, self.sampler = loader, sampler
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

    def next(self, max_epochs: int | None):
        """The next batch, or None when ``max_epochs`` epochs are done."""
        while True:
            if self._it is None:
                if max_epochs is not None and self.epoch >= max_epochs:
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

    def position(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset, "epoch_start": self.epoch_start}

    def restore(self, pos: dict):
        """Continue at a saved position (run before restoring the step's RNG state)."""
        self.epoch, self.offset = pos["epoch"], pos["offset"]
        self.epoch_start = pos["epoch_start"]
        if self.epoch_start is not None:
            # Recreate the epoch's order exactly as it was drawn, then skip what was used.
            torch.set_rng_state(self.epoch_start["torch"])
            for g, s in zip(_loader_generators(self.loader) if self.sampler is None else [],
                            self.epoch_start["gens"]):
                g.set_state(s)
            self._begin_epoch(self.offset)
        else:
            self._it = None


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


def _to_device(batch, device: torch.device) -> dict:
    batch = _as_dict(batch)
    if device.type == "cpu":
        return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def _count_tokens(batch: dict):
    """Tokens in a batch: attention_mask.sum() if present, else input_ids.numel()."""
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return mask.sum() if mask.is_cuda else int(mask.sum())
    ids = batch.get("input_ids")
    if isinstance(ids, torch.Tensor):
        return ids.numel()
    first = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    return 0 if first is None else int(first.shape[0])  # images etc.: examples


# --- RNG states ------------------------------------------------------------------------


def _rng_state() -> dict:
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


def _set_rng_state(state: dict):
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _ForkedRNG:
    """Run a block with every RNG seeded to ``seed`` and restore them afterwards, so that
    evaluation (e.g. random masking in an MLM collate) is the same each time and leaves
    the training run's randomness untouched."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.saved = _rng_state()
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        import numpy as np

        np.random.seed(self.seed % 2**32)

    def __exit__(self, *exc):
        _set_rng_state(self.saved)
        return False


# --- evaluation ------------------------------------------------------------------------


def _autocast(device: torch.device, precision: str):
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}; got {precision!r}")
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


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


@torch.no_grad()
def evaluate(model, eval_data, *, collate_fn=None, batch_size=32, max_batches=None,
             loss_fn=None, device=None, precision="auto", seed=0) -> float:
    """Mean loss of ``model`` over ``eval_data`` (the mean of per-batch losses).

    Runs in eval mode (no dropout) under ``no_grad`` with every RNG seeded by ``seed`` and
    restored afterwards, so a random objective (MLM masking) is scored on the same masks
    each time. ``max_batches`` caps the number of batches (the first ones, unshuffled).
    The model's train/eval mode is restored.
    """
    device = _resolve_device(device, model)
    loader = eval_data if isinstance(eval_data, torch.utils.data.DataLoader) else _make_loader(
        eval_data, batch_size, collate_fn, False, 0, device.type == "cuda")[0]
    was_training = model.training
    model.eval()
    total, n = None, 0
    try:
        with _ForkedRNG(seed):
            for i, batch in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                with _autocast(device, precision):
                    loss, _ = _loss_of(model, _to_device(batch, device), loss_fn)
                total = loss.detach().float() if total is None else total + loss.detach().float()
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluation data yields no batch")
    return float(total / n)


def _resolve_device(device, model) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device is None:
        from ssledu import get_device

        return get_device()
    from ssledu import get_device

    return get_device(str(device))


# --- feedback: progress bar and live plot ----------------------------------------------


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Colab, VS Code), False in a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    names = {cls.__name__ for cls in type(shell).__mro__}
    return "ZMQInteractiveShell" in names or "IPKernelApp" in getattr(shell, "config", {})


def _draw_history(ax, history: History, title: str):
    steps = [s["step"] for s in history.steps]
    ax.plot(steps, [s["loss"] for s in history.steps], lw=1, label="train")
    if history.evals:
        ax.plot([e["step"] for e in history.evals], [e["val_loss"] for e in history.evals],
                "o-", ms=4, label="validation")
    last = f" (step {steps[-1]}, loss {history.steps[-1]['loss']:.3f})" if steps else ""
    ax.set_title(title + last)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    if history.steps or history.evals:
        ax.legend(loc="upper right")


class _LivePlot:
    """One figure in the notebook output, redrawn in place at most every ``every_s``."""

    def __init__(self, every_s: float = 2.0):
        from IPython.display import display

        self.base_s = self.every_s = every_s
        self.last = 0.0
        self.handle = display(self._image(History()), display_id=True)

    @staticmethod
    def _image(history: History):
        import io

        from IPython.display import Image

        buf = io.BytesIO()
        history.plot().savefig(buf, format="png", dpi=80)
        return Image(data=buf.getvalue(), format="png")

    def update(self, history: History, force: bool = False):
        now = time.perf_counter()
        if force or now - self.last >= self.every_s:
            if self.handle is not None:
                self.handle.update(self._image(history))
            done = time.perf_counter()
            # Drawing costs ~0.1 s: keep it under ~2 % of the run even on a slow machine.
            self.every_s = max(self.base_s, 50 * (done - now))
            self.last = done


# --- checkpoints -----------------------------------------------------------------------


def _write_checkpoint(path: Path, model, state: dict) -> Path:
    """Write ``save_pretrained`` files + trainer_state.pt to ``path`` atomically.

    Everything goes to a temporary sibling folder first, which then replaces ``path`` with
    ``os.replace``: a crash leaves either the previous checkpoint or the new one, never a
    half-written folder (at worst the previous one under ``.<name>.old-<pid>``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old = None
    try:
        os.chmod(tmp, 0o755)
        model.save_pretrained(tmp)
        torch.save(state, tmp / _STATE_FILE)
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _find_checkpoint(path) -> Path:
    path = Path(path)
    if (path / _STATE_FILE).exists():
        return path
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and (olds[-1] / _STATE_FILE).exists():
        warnings.warn(f"{path} is incomplete; resuming from the previous checkpoint {olds[-1]}")
        return olds[-1]
    raise FileNotFoundError(
        f"no checkpoint at {path} (expected {_STATE_FILE} beside the model files); pass the "
        "checkpoint_dir of an earlier fit(...) run"
    )


def _load_weights(model, folder: Path):
    """Load a save_pretrained folder's weights into ``model`` in place."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded = {p.data_ptr() for name, p in model.state_dict().items() if name in state}
    params = model.state_dict()
    untied = [k for k in missing if params[k].data_ptr() not in loaded]
    if untied or unexpected:
        raise ValueError(
            f"the checkpoint in {folder} does not fit this model (missing: {untied[:5]}, "
            f"unexpected: {list(unexpected)[:5]}); build the model with the same builder, "
            "preset and overrides as the run that wrote it"
        )


# --- the loop --------------------------------------------------------------------------


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
    precision: str = "auto",
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
    A NaN/inf loss raises ``FloatingPointError`` naming the step (before the weights see it
    on the CPU). Evaluation: every ``eval_every`` steps and at the end, the mean loss over
    ``eval_batches`` batches of ``eval_data`` (see :func:`evaluate`), plus
    ``eval_fn(model, eval_loader) -> dict`` when given.

    Device and speed: ``device`` (default ``ssledu.get_device()``); ``precision`` "auto"
    (bf16 autocast on a CUDA GPU that supports it, else fp32) | "bf16" | "fp32";
    ``compile=True`` wraps the model in ``torch.compile``.

    Feedback: a tqdm bar (``progress``) with loss and tokens/s; ``live_plot`` "auto" draws a
    loss plot updated in place inside a notebook and nothing in a terminal.

    Checkpoints: with ``checkpoint_dir``, every ``checkpoint_every`` steps, on Ctrl-C and at
    the end, the folder is (atomically) replaced by ``save_pretrained`` files +
    ``trainer_state.pt``. ``resume_from=folder`` (or ``True``: ``checkpoint_dir``) restores
    weights, optimizer, schedule, data position and RNG states and continues; the history
    includes the earlier steps. Exact on the CPU when fit built the loader, or when a given
    DataLoader's order comes from its own seeded generator or the global RNG; a
    ``collate_fn`` with its own generator is restored if it has ``state_dict`` /
    ``load_state_dict``. With only ``max_seconds`` the schedule depends on the clock, so
    runs are not bit-for-bit repeatable.

    Callbacks: ``callback(state: FitState)`` after every step and evaluation; set
    ``state.stop = True`` to end the run. ``seed`` (None: leave the RNGs alone) seeds
    torch / random / numpy at the start (dropout, random masking) and the data order.
    The model is left in eval mode.
    """
    # ---- arguments
    if max_steps is None and max_seconds is None and epochs is None:
        raise ValueError("give a budget: max_steps=..., max_seconds=... or epochs=... (or several)")
    for name, value in [("max_steps", max_steps), ("epochs", epochs), ("eval_every", eval_every),
                        ("eval_batches", eval_batches), ("checkpoint_every", checkpoint_every)]:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None; got {value!r}")
    for name, value in [("batch_size", batch_size), ("grad_accum", grad_accum), ("log_every", log_every)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive; got {max_seconds!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive; got {lr!r} (1e-3 is a good start for tiny models)")
    if live_plot not in ("auto", True, False):
        raise ValueError(f"live_plot must be 'auto', True or False; got {live_plot!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}; got {precision!r}")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs checkpoint_dir= (the folder to write to)")
    if resume_from is True:
        if checkpoint_dir is None:
            raise ValueError("resume_from=True resumes from checkpoint_dir; give checkpoint_dir=")
        resume_from = checkpoint_dir if (Path(checkpoint_dir) / _STATE_FILE).exists() else None
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables taking a FitState; got {cb!r}")

    device = _resolve_device(device, model)
    if seed is not None:
        from ssledu import seed_everything

        seed_everything(seed)
    data_seed = 0 if seed is None else seed
    model.to(device)
    forward_model = torch.compile(model) if compile else model
    cuda = device.type == "cuda"

    loader, sampler = _make_loader(train_data, batch_size, collate_fn, shuffle, data_seed, cuda)
    stream = _Stream(loader, sampler)
    eval_loader = None
    if eval_data is not None:
        eval_loader = _make_loader(eval_data, batch_size, collate_fn, False, 0, cuda)[0]

    # ---- step budget and schedule
    total_steps = max_steps
    if epochs is not None and stream.batches_per_epoch is not None:
        by_epochs = max(1, epochs * stream.batches_per_epoch // grad_accum)
        total_steps = by_epochs if total_steps is None else min(total_steps, by_epochs)
    groups = param_groups(model, weight_decay, decay_embeddings=decay_embeddings)
    extra = {"fused": True} if cuda else {}
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), **extra)
    if total_steps is not None:
        from transformers import get_cosine_schedule_with_warmup

        warm = warmup_steps if warmup_steps is not None else min(100, int(0.05 * total_steps))
        scheduler = get_cosine_schedule_with_warmup(optimizer, warm, total_steps)
        clock = None
    elif max_seconds is not None:
        clock = _ClockCosine(max_seconds, warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, clock)
    else:  # epochs over a loader without a length: warmup, then constant
        warm = warmup_steps if warmup_steps is not None else 100
        clock = None
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / max(1, warm)))

    history = History()
    step, train_s = 0, 0.0
    collate_state = getattr(collate_fn, "state_dict", None)

    # ---- resume
    if resume_from is not None:
        folder = _find_checkpoint(resume_from)
        state = torch.load(folder / _STATE_FILE, map_location="cpu", weights_only=True)
        _load_weights(model, folder)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, train_s = state["step"], state["train_s"]
        history.steps, history.evals = list(state["history"]["steps"]), list(state["history"]["evals"])
        if collate_state is not None and state.get("collate") is not None:
            collate_fn.load_state_dict(state["collate"])
        stream.restore(state["position"])
        _set_rng_state(state["rng"])  # after the data stream replayed its epoch start

    def snapshot() -> dict:
        return {
            "format": 1,
            "step": step,
            "train_s": train_s,
            "position": stream.position(),
            "rng": _rng_state(),
            "collate": collate_fn.state_dict() if collate_state is not None else None,
        }

    def save(snap: dict):
        state = dict(snap, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                     history={"steps": list(history.steps), "evals": list(history.evals)})
        history.checkpoint = str(_write_checkpoint(Path(checkpoint_dir), model, state))

    # ---- feedback
    show_plot = live_plot is True or (live_plot == "auto" and _in_notebook())
    plot = None
    if show_plot:
        try:
            plot = _LivePlot()
        except ImportError:
            plot = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, leave=True)
    bar_t = 0.0

    # ---- logging state (on CUDA, losses stay on the GPU and are read in groups)
    sync_every = 1 if not cuda else 16
    pending = []  # (step, loss, lr, tokens, seconds, metrics)
    window = {"loss": 0.0, "n": 0, "tokens": 0.0, "t": 0.0, "metrics": {}}
    last_good = {"step": step, "loss": history.final_loss}
    last_lr = [lr]
    t_start = time.perf_counter() - (history.evals[-1]["wall_s"] if history.evals else train_s)

    def flush(final: bool = False):
        if cuda and pending:
            values = torch.stack([p[1] for p in pending]).float().tolist()
        else:
            values = [p[1] for p in pending]
        for (s, _, lr_s, tokens, dur, metrics), value in zip(pending, values):
            last_lr[0] = lr_s
            if not math.isfinite(value):
                raise FloatingPointError(_nan_message(s, value, last_good, lr, applied=cuda))
            last_good.update(step=s, loss=value)
            window["loss"] += value
            window["n"] += 1
            window["tokens"] += float(tokens)
            window["t"] += dur
            for k, v in metrics.items():
                window["metrics"][k] = window["metrics"].get(k, 0.0) + float(v)
            if s % log_every == 0 or s == stop_at:
                n = window["n"]
                record = {"step": s, "loss": window["loss"] / n, "lr": lr_s,
                          "tokens_per_s": window["tokens"] / max(window["t"], 1e-9),
                          "elapsed_s": train_s - sum(p[4] for p in pending if p[0] > s)}
                record.update({k: v / n for k, v in window["metrics"].items()})
                history.steps.append(record)
                window.update(loss=0.0, n=0, tokens=0.0, t=0.0, metrics={})
        pending.clear()
        if final and window["n"]:  # close the last, partial log window
            n = window["n"]
            record = {"step": last_good["step"], "loss": window["loss"] / n, "lr": last_lr[0],
                      "tokens_per_s": window["tokens"] / max(window["t"], 1e-9), "elapsed_s": train_s}
            record.update({k: v / n for k, v in window["metrics"].items()})
            history.steps.append(record)
            window.update(loss=0.0, n=0, tokens=0.0, t=0.0, metrics={})

    def run_eval():
        flush()
        val = evaluate(model, eval_loader, max_batches=eval_batches, loss_fn=loss_fn,
                       device=device, precision=precision, seed=data_seed)
        record = {"step": step, "val_loss": val}
        if eval_fn is not None:
            was = model.training
            model.eval()
            try:
                with torch.no_grad(), _ForkedRNG(data_seed):
                    record.update(eval_fn(model, eval_loader) or {})
            finally:
                model.train(was)
        record.update(elapsed_s=train_s, wall_s=time.perf_counter() - t_start)
        history.evals.append(record)
        return record

    stop_at = total_steps  # the step whose record closes a log window
    max_epochs = epochs if total_steps is None else None
    model.train()
    in_update = False
    snap = snapshot() if checkpoint_dir is not None else None
    try:
        while True:
            # ---- budget checks
            if total_steps is not None and step >= total_steps:
                history.stopped = "max_steps" if max_steps is not None and step >= max_steps else "epochs"
                break
            if max_seconds is not None and train_s >= max_seconds:
                history.stopped = "max_seconds"
                break
            # ---- one optimizer step
            t0 = time.perf_counter()
            loss_sum, tokens, metrics_sum, n_micro = None, 0, {}, 0
            for _ in range(grad_accum):
                batch = stream.next(max_epochs)
                if batch is None:
                    break
                n_micro += 1
                batch = _as_dict(batch)
                tokens = tokens + _count_tokens(batch)
                batch = _to_device(batch, device)
                with _autocast(device, precision):
                    loss, metrics = _loss_of(forward_model, batch, loss_fn)
                if not cuda and not math.isfinite(loss.item()):
                    flush()
                    raise FloatingPointError(_nan_message(step + 1, loss.item(), last_good, lr))
                (loss / grad_accum).backward()  # a short last step keeps the same scale
                detached = loss.detach()
                loss_sum = detached if loss_sum is None else loss_sum + detached
                for k, v in metrics.items():
                    metrics_sum[k] = metrics_sum.get(k, 0.0) + (float(v) if not cuda else v)
            if n_micro == 0:
                history.stopped = "epochs"
                break
            if clip_norm is not None:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            else:
                grad_norm = _grad_norm(model)
            if not cuda:
                grad_norm = grad_norm.item()
                if not math.isfinite(grad_norm):
                    flush()
                    raise FloatingPointError(_nan_message(step + 1, grad_norm, last_good, lr,
                                                          what="gradient norm"))
            lr_now = optimizer.param_groups[0]["lr"]
            in_update = True
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            dur = time.perf_counter() - t0
            train_s += dur
            if clock is not None:
                clock.elapsed_s = train_s
            scheduler.step()
            step += 1
            step_loss = loss_sum / n_micro
            metrics_sum = {k: v / n_micro for k, v in metrics_sum.items()}
            metrics_sum["grad_norm"] = grad_norm
            pending.append((step, step_loss if cuda else step_loss.item(), lr_now, tokens, dur,
                            metrics_sum))
            if checkpoint_dir is not None:
                snap = snapshot()
            in_update = False
            if len(pending) >= sync_every:
                flush()

            # ---- feedback, evaluation, callbacks, checkpoints
            if bar is not None:
                bar.update(1)
                now = time.perf_counter()
                if now - bar_t > 0.5 and history.steps:
                    bar_t = now
                    last = history.steps[-1]
                    bar.set_postfix_str(f"loss {last['loss']:.3f} | {last['tokens_per_s']:,.0f} tok/s")
            if plot is not None and history.steps:
                plot.update(history)
            stop_requested = False
            if callbacks:
                stop_requested = _call(callbacks, FitState("step", step, model, optimizer, scheduler,
                                                           history, _loss=step_loss))
            if eval_loader is not None and eval_every is not None and step % eval_every == 0:
                record = run_eval()
                if callbacks:
                    stop_requested |= _call(callbacks, FitState("eval", step, model, optimizer,
                                                                scheduler, history, last_eval=record,
                                                                _loss=step_loss))
            if checkpoint_every is not None and step % checkpoint_every == 0:
                flush()
                save(snap)
            if stop_requested:
                history.stopped = "callback"
                break
    except KeyboardInterrupt:
        history.stopped = "interrupted"
        try:
            flush(final=True)
        except FloatingPointError:
            pass
        if checkpoint_dir is not None:
            if in_update:
                warnings.warn("interrupted during a parameter update: no checkpoint written now; "
                              f"the last one is {history.checkpoint}")
            else:  # the state after the last completed step; a step in progress is dropped
                save(snap)
    except FloatingPointError as err:
        err.history = history
        model.eval()
        raise
    else:
        flush(final=True)
        if eval_loader is not None and (not history.evals or history.evals[-1]["step"] != step):
            run_eval()
        if checkpoint_dir is not None:
            save(snapshot())
    finally:
        if bar is not None:
            bar.close()
        if plot is not None and history.steps:
            plot.update(history, force=True)
    model.eval()
    return history


def _grad_norm(model) -> torch.Tensor:
    """L2 norm of all gradients together (what clip_grad_norm_ measures)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _call(callbacks, state: FitState) -> bool:
    for cb in callbacks:
        cb(state)
    return state.stop


def _nan_message(step: int, value: float, last_good: dict, lr: float, what: str = "loss",
                 applied: bool = False) -> str:
    prev = (f"the last finite loss was {last_good['loss']:.4f} at step {last_good['step']}"
            if last_good.get("loss") is not None else "no step had a finite loss yet")
    where = ("The GPU run noticed it a few steps later, so the weights may hold NaNs: reload "
             "the last checkpoint." if applied else "Training stopped before the weights took "
             "the bad step.")
    return (
        f"{what} is {value} at step {step}; {prev}. {where} Try a lower learning rate "
        f"(lr={lr:g} -> {lr / 3:.2g}), a longer warmup, or check the batch for labels that "
        "are all -100"
    )
