"""ssledu: the tested package behind the self-supervised learning course.

The chapters (``chapters/NN_*.ipynb``) call into this package; every objective,
corpus, model builder and plot they use lives here and is unit tested.

First cell of a chapter::

    import ssledu
    device = ssledu.setup(seed=0)

Heavy libraries (torch, transformers) are imported lazily so that
``import ssledu`` and ``ssledu doctor`` stay fast and work even when one of
them is broken.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "get_device",
    "seed_everything",
    "quick_mode",
    "setup",
    "report",
    "reported_metrics",
    "cache_dir",
]

_DEVICES = ("cpu", "cuda", "mps")


def quick_mode() -> bool:
    """Whether the course runs in quick mode (env ``SSLEDU_QUICK``).

    Quick mode shrinks data and training steps so that a chapter executes in
    about a minute (CI runs every chapter this way). Accepted values:
    1/true/yes/on and 0/false/no/off (case-insensitive); unset means off.
    """
    from ssledu.conventions import env_flag  # the one parser of on/off variables

    return env_flag("SSLEDU_QUICK")


def get_device(prefer: str | None = None):
    """Return the ``torch.device`` the course trains on.

    Order: the argument ``prefer``, else env ``SSLEDU_DEVICE`` (``cpu``,
    ``cuda``, ``cuda:1``, ``mps``), else CUDA when available, else CPU. Apple's
    MPS is used only when asked for explicitly, because several operations the
    course uses fall back to CPU there and training is then slower.
    """
    import torch

    choice = prefer if prefer is not None else os.environ.get("SSLEDU_DEVICE", "")
    choice = choice.strip().lower()
    if not choice or choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = choice.split(":", 1)[0]
    if kind not in _DEVICES:
        raise ValueError(
            f"unknown device {choice!r} (from {'argument' if prefer else 'SSLEDU_DEVICE'}); "
            f"use one of: auto, cpu, cuda, cuda:N, mps"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {choice!r} was requested but CUDA is not available in this torch "
            f"build ({torch.__version__}); unset SSLEDU_DEVICE to fall back to the CPU"
        )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise RuntimeError(
            "device 'mps' was requested but Apple MPS is not available here; "
            "unset SSLEDU_DEVICE to use the CPU"
        )
    return torch.device(choice)


def seed_everything(seed: int = 0) -> int:
    """Seed Python's ``random``, NumPy and torch (all devices); return the seed.

    Also sets ``PYTHONHASHSEED`` for subprocesses. CPU training with the same
    seed and the same data order is bit-for-bit repeatable.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    import torch

    torch.manual_seed(seed)
    return seed


def cache_dir() -> Path:
    """Folder for tokenizers, checkpoints and other cached artefacts.

    ``SSLEDU_CACHE`` overrides; the default is ``~/.cache/ssledu``.
    """
    env = os.environ.get("SSLEDU_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ssledu"


def _device_line(device) -> str:
    import torch

    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        bf16 = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return f"device: cuda:{idx} ({props.name}, {props.total_memory / 2**30:.0f} GiB, {bf16})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"device: cpu ({n} thread{'' if n == 1 else 's'})"
    return f"device: {device}"


def _silence_hub_progress_bars():
    """Turn off the progress bars of transformers, huggingface_hub and datasets.

    Saving or loading a nano model otherwise leaves "Writing model shards 0/1" and
    "Loading weights 0/42" bars in a chapter (in an untrusted notebook a stored bar reads
    0% for a finished job). Sets ``HF_HUB_DISABLE_PROGRESS_BARS`` and
    ``HF_DATASETS_DISABLE_PROGRESS_BARS`` for libraries imported later, and switches off
    the bars of those already imported. ``transformers.utils.logging.enable_progress_bar()``
    brings them back.
    """
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    import huggingface_hub.utils
    import transformers.utils.logging

    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    datasets = sys.modules.get("datasets")  # importing it here would cost a second
    if datasets is not None and hasattr(datasets, "disable_progress_bars"):
        datasets.disable_progress_bars()


def setup(seed: int = 0, device: str | None = None, quiet: bool = False):
    """First cell of every chapter: seed, pick the device, print three lines.

    Also silences the Hugging Face libraries' own progress bars (``_silence_hub_progress_bars``).

    Returns the ``torch.device`` to train on. Example output::

        ssledu 0.1.0 | python 3.11.7 | torch 2.13.0 | transformers 5.23.0
        device: cpu (2 threads)
        seed: 0 | quick mode: on (SSLEDU_QUICK=1)
    """
    import torch
    import transformers

    _silence_hub_progress_bars()
    seed_everything(seed)
    dev = get_device(device)
    if not quiet:
        py = ".".join(map(str, sys.version_info[:3]))
        print(
            f"ssledu {__version__} | python {py} | torch {torch.__version__} | "
            f"transformers {transformers.__version__}"
        )
        print(_device_line(dev))
        q = quick_mode()
        print(f"seed: {seed} | quick mode: {'on (SSLEDU_QUICK=1)' if q else 'off (full run)'}")
    return dev


# --- metrics a chapter reports (shown by `ssledu course --execute`) ---------

_METRICS: dict[str, object] = {}
_REPORT_PREFIX = "SSLEDU_METRIC "


def report(name: str, value, *, quiet: bool = True):
    """Record one of a chapter's key metrics, e.g. ``report("val_loss", 1.93)``.

    The value is remembered and, under ``ssledu course --execute``, written to the runner's
    sink: the runner shows it in its summary table, stores it in the notebook's metadata and
    fills the callout numbers tagged with its name (see :mod:`ssledu.course`). Nothing is
    printed unless ``quiet=False`` (the chapter shows its numbers in its own words). Returns
    ``value``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"metric name must be a non-empty string; got {name!r}")
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if not isinstance(value, (int, float, str, bool)) and value is not None:
        raise TypeError(
            f"report({name!r}, ...) takes a number or a short string; got {type(value).__name__}"
        )
    _METRICS[name] = value
    if not quiet:
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"[report] {name} = {shown}")
    # A machine-readable line for `ssledu course`; the file is set by the runner.
    sink = os.environ.get("SSLEDU_REPORT_FILE")
    if sink:
        with open(sink, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"name": name, "value": value}) + "\n")
    return value


def reported_metrics() -> dict:
    """The metrics recorded so far in this process (a copy)."""
    return dict(_METRICS)


_SUBMODULES = {
    "check", "data", "models", "train", "viz", "widgets", "objectives", "probe",
    "baselines", "bench", "cli",
}


def __getattr__(name):
    # `ssledu.check.foo(...)` works after a bare `import ssledu`, without
    # importing torch-heavy modules until they are used.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ssledu' has no attribute {name!r}")
