"""Checkpoints that survive a crash: atomic save, a fallback on resume, one message when damaged.

A checkpoint is a folder that ``ModelClass.from_pretrained(folder)`` loads (safetensors)
plus ``trainer_state.pt`` (whatever the training loop needs to continue: optimizer,
schedule, step, data position, RNG states, history)::

    save_checkpoint("runs/mlm", model, {"step": 100, "optimizer": opt.state_dict()})
    folder = find_checkpoint("runs/mlm")          # None when there is none yet
    state = load_checkpoint(folder, model)       # weights into model, returns the state dict

Saving writes a temporary sibling folder ``.<name>.tmp-*`` and swaps it in with two
renames (old -> ``.<name>.old-*``, new -> ``<name>``), so a crash leaves a whole
checkpoint somewhere: ``find_checkpoint`` falls back to the ``.old`` one when a kill hit
between the two renames. ``clean_orphans`` removes what such crashes leave behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = [
    "STATE_FILE",
    "CheckpointError",
    "save_checkpoint",
    "find_checkpoint",
    "load_checkpoint",
    "clean_orphans",
    "check_writable",
]

STATE_FILE = "trainer_state.pt"


class CheckpointError(ValueError):
    """A checkpoint folder that exists but cannot be used (damaged or incomplete)."""


def _orphans(path: Path, kind: str) -> list[Path]:
    """Sibling folders ``.<name>.<kind>-*`` left by interrupted saves, oldest first."""
    found = [p for p in path.parent.glob(f".{path.name}.{kind}-*") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def _disk_message(path: Path, err: OSError) -> str:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:,.0f} MiB free"
    except OSError:
        free = "free space unknown"
    if err.errno == errno.ENOSPC:
        what = f"the disk holding {path.parent} is full ({free})"
        fix = "free some space or pass checkpoint_dir= on another disk"
    else:
        what = f"{err.strerror or err} ({free})"
        fix = "pass a checkpoint_dir= you can write to"
    return f"could not write the checkpoint {path}: {what}; {fix}"


def _with_message(err: OSError, message: str) -> OSError:
    """An OSError of the same class and errno as ``err`` whose text is ``message``."""
    new = type(err)(err.errno, message) if err.errno is not None else type(err)(message)
    if err.errno is not None:
        new.args = (err.errno, message)
    return new


@contextlib.contextmanager
def _quiet_transformers():
    """No 'Writing model shards' bar in the middle of a training run's output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_off = not hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_off:
            hf_logging.enable_progress_bar()


def check_writable(folder) -> Path:
    """Make sure checkpoints can be written to ``folder`` (create its parent, write a probe).

    Raises PermissionError / OSError naming the folder before any training time is spent.
    """
    path = Path(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            (probe / "probe").write_bytes(b"ok")
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    except OSError as err:
        raise _with_message(err, f"cannot write checkpoints to {path} ({err.strerror or err}); "
                            "pass checkpoint_dir= a folder you can write to") from err
    return path


def clean_orphans(folder, *, keep_old: bool = False) -> list[Path]:
    """Remove ``.<name>.tmp-*`` (and, unless ``keep_old``, ``.<name>.old-*``) beside ``folder``.

    Only call it when ``folder`` itself holds a whole checkpoint (or with ``keep_old``),
    since an ``.old`` folder may be the only copy left. Returns the folders removed.
    """
    path = Path(folder)
    gone = _orphans(path, "tmp") + ([] if keep_old else _orphans(path, "old"))
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def swap_in(new: Path, path: Path) -> Path | None:
    """Put the finished folder ``new`` at ``path`` with two renames; return the old copy's folder.

    The previous ``path`` becomes ``.<name>.old-<pid>`` first, so a kill between the renames
    leaves it whole (``find_checkpoint`` falls back to it); the caller removes it when done.
    """
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(new, path)
    return old


def save_checkpoint(folder, model, state: dict) -> Path:
    """Write ``model.save_pretrained`` files + ``trainer_state.pt`` to ``folder`` atomically.

    Everything goes to a temporary sibling first, which then replaces ``folder`` with
    ``os.replace``: a crash leaves the previous checkpoint or the new one, never a
    half-written folder. An OSError (full disk, no permission) names the folder and the
    free space. Returns the folder.
    """
    path = Path(folder)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        os.chmod(tmp, 0o755)
        with _quiet_transformers():
            model.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)  # last: its presence marks a whole checkpoint
        swap_in(tmp, path)
        tmp = None
    except OSError as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _with_message(err, _disk_message(path, err)) from err
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    clean_orphans(path)
    return path


def find_checkpoint(folder, *, required: bool = False) -> Path | None:
    """The folder to resume from: ``folder`` itself when whole, else the newest ``.old`` copy.

    A kill between the two renames of a save leaves no ``folder`` but a whole
    ``.<name>.old-*``: that one is used, with a warning. Returns None when there is no
    checkpoint at all, or raises FileNotFoundError when ``required``.
    """
    path = Path(folder)
    if (path / STATE_FILE).exists():
        return path
    olds = [p for p in _orphans(path, "old") if (p / STATE_FILE).exists()]
    if olds:
        warnings.warn(f"{path} is missing or incomplete (a save was interrupted); resuming from "
                      f"the previous checkpoint {olds[-1]}", stacklevel=2)
        return olds[-1]
    if required:
        raise FileNotFoundError(
            f"no checkpoint at {path} (expected {STATE_FILE} beside the model files); pass the "
            "checkpoint_dir of an earlier fit(...) run"
        )
    return None


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"the checkpoint file {path} is damaged ({why}); delete the folder {path.parent} "
        "and train again, or resume from an older copy of it"
    )


def load_checkpoint(folder, model=None, *, required_keys=("step",)) -> dict:
    """Load ``trainer_state.pt`` of ``folder`` (and its weights into ``model``, in place).

    A damaged file (empty, truncated, missing keys) raises one CheckpointError naming the
    file; weights that do not fit the model raise a ValueError saying how to build it.
    """
    folder = Path(folder)
    state_path = folder / STATE_FILE
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise _damaged(state_path, f"{type(err).__name__}: {str(err)[:80]}") from err
    if not isinstance(state, dict):
        raise _damaged(state_path, f"it holds a {type(state).__name__}, not a dict")
    missing = [k for k in required_keys if k not in state]
    if missing:
        raise _damaged(state_path, f"missing {', '.join(missing)}")
    if model is not None:
        _load_weights(model, folder)
    return state


def _load_weights(model, folder: Path):
    """Load a save_pretrained folder's weights into ``model`` in place."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise _damaged(folder / "model.safetensors", "the file is missing")
    state = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, RuntimeError) as err:
            raise _damaged(f, f"{type(err).__name__}: {str(err)[:80]}") from err
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ: another vocabulary or size
        raise ValueError(
            f"the checkpoint in {folder} does not fit this model ({str(err).splitlines()[-1].strip()}); "
            "build the model with the same builder, preset and overrides as the run that wrote it"
        ) from None
    loaded = {p.data_ptr() for name, p in model.state_dict().items() if name in state}
    params = model.state_dict()
    untied = [k for k in missing if params[k].data_ptr() not in loaded]
    if untied or unexpected:
        raise ValueError(
            f"the checkpoint in {folder} does not fit this model (missing: {untied[:5]}, "
            f"unexpected: {list(unexpected)[:5]}); build the model with the same builder, "
            "preset and overrides as the run that wrote it"
        )
