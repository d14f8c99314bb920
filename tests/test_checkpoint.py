"""Checkpoints: atomic save, fallback after an interrupted save, damage, full disk, settings."""

import errno
import os
import warnings
from pathlib import Path

import pytest
import torch

from cycle_task import QUIET, V, clm, cycle_blocks, losses, nano
from ssledu import checkpoint, models, train

pytestmark = pytest.mark.usefixtures("one_thread")


KW = dict(collate_fn=clm, batch_size=8, lr=3e-3, seed=0, **QUIET)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A 4-step run with a checkpoint, and the 8-step run it is the first half of."""
    root = tmp_path_factory.mktemp("ckpt")
    train.fit(nano(), cycle_blocks(), max_steps=8, checkpoint_dir=root / "run",
              callbacks=[stop_at(4)], **KW)
    full = train.fit(nano(), cycle_blocks(), max_steps=8, **KW)
    return root / "run", full


def stop_at(k):
    def cb(state):
        if state.step == k:
            raise KeyboardInterrupt

    return cb


def copy_of(src: Path, dst: Path) -> Path:
    """A copy of the checkpoint folder ``src`` at ``dst``."""
    import shutil

    shutil.copytree(src, dst)
    return dst


def killed_between_renames(src: Path, dst: Path, monkeypatch):
    """Copy the checkpoint ``src`` to ``dst``, then die inside the next save of ``dst``."""
    import shutil

    shutil.copytree(src, dst)
    real_replace, calls = os.replace, []

    def replace(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies here: old moved away, new not in place
        return real_replace(a, b)

    with monkeypatch.context() as m:
        m.setattr(checkpoint.os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save_checkpoint(dst, nano(), {"step": 99})


@pytest.mark.parametrize("resume", ["True", "path"])
def test_a_kill_between_the_two_renames_resumes_from_the_old_copy(tmp_path, written, monkeypatch, resume):
    folder, full = written
    ckpt = tmp_path / "run"
    killed_between_renames(folder, ckpt, monkeypatch)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "run" not in names and any(n.startswith(".run.old-") for n in names)
    (tmp_path / ".run.tmp-killed").mkdir()  # what a real kill (no cleanup) also leaves
    with pytest.warns(UserWarning, match="resuming from the previous checkpoint"):
        h = train.fit(nano(), cycle_blocks(), max_steps=8, checkpoint_dir=ckpt,
                      resume_from=True if resume == "True" else ckpt, **KW)
    assert losses(h) == losses(full)  # continued from step 4, not restarted from 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # orphans cleaned


def test_orphan_tmp_folders_are_removed_and_empty_dir_starts_fresh(tmp_path):
    (tmp_path / ".run.tmp-abc").mkdir()
    (tmp_path / ".run.tmp-abc" / "model.safetensors").write_bytes(b"half")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to resume from: a fresh start, no warning
        h = train.fit(nano(), cycle_blocks(), max_steps=2, checkpoint_dir=tmp_path / "run",
                      resume_from=True, **KW)
    assert [s["step"] for s in h.steps] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train.fit(nano(), cycle_blocks(), max_steps=2, resume_from=tmp_path / "nothing", **KW)


def test_an_unwritable_folder_fails_before_training(tmp_path, monkeypatch):
    steps = []

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint.tempfile, "mkdtemp", refuse)
    with pytest.raises(PermissionError, match="cannot write checkpoints to .*locked"):
        train.fit(nano(), cycle_blocks(), max_steps=50, checkpoint_dir=tmp_path / "locked",
                  callbacks=[lambda s: steps.append(s.step)], **KW)
    assert steps == []  # not one step of training was spent


def test_a_full_disk_names_the_folder_and_keeps_the_history(tmp_path, monkeypatch):
    def full_disk(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError) as err:
        train.fit(nano(), cycle_blocks(), max_steps=5, checkpoint_dir=tmp_path / "run", **KW)
    msg = str(err.value)
    assert err.value.errno == errno.ENOSPC
    assert str(tmp_path / "run") in msg and "is full" in msg and "err.history" in msg
    assert [s["step"] for s in err.value.history.steps] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half-written folder


def damage(folder: Path, how: str):
    state = folder / "trainer_state.pt"
    weights = folder / "model.safetensors"
    if how == "empty state":
        state.write_bytes(b"")
    elif how == "truncated state":
        state.write_bytes(state.read_bytes()[:300])
    elif how == "truncated safetensors":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "missing key":
        s = torch.load(state, weights_only=True)
        del s["optimizer"]
        torch.save(s, state)
    return state if "state" in how or "key" in how else weights


@pytest.mark.parametrize("how", ["empty state", "truncated state", "truncated safetensors", "missing key"])
def test_a_damaged_checkpoint_gets_one_message(tmp_path, written, how):
    ckpt = copy_of(written[0], tmp_path / "run")
    bad = damage(ckpt, how)
    with pytest.raises(checkpoint.CheckpointError) as err:
        train.fit(nano(), cycle_blocks(), max_steps=8, resume_from=ckpt, **KW)
    msg = str(err.value)
    assert f"the checkpoint file {bad} is damaged" in msg and "train again" in msg


def test_resuming_with_other_settings_is_refused_or_warned(tmp_path, written):
    ckpt = copy_of(written[0], tmp_path / "run")
    for change in (dict(lr=1e-3), dict(batch_size=4)):
        with pytest.raises(ValueError) as err:
            train.fit(nano(), cycle_blocks(), max_steps=8, resume_from=ckpt, **{**KW, **change})
        name = next(iter(change))
        assert f"{name}={KW[name]!r} there, {change[name]!r} here" in str(err.value)
    with pytest.warns(UserWarning, match=r"max_steps=8 -> 12"):
        h = train.fit(nano(), cycle_blocks(), max_steps=12, resume_from=ckpt, **KW)
    assert h.steps[-1]["step"] == 12


def test_load_checkpoint_round_trip(tmp_path):
    model = nano()
    checkpoint.save_checkpoint(tmp_path / "c", model, {"step": 3, "extra": torch.arange(3)})
    other = models.gpt(V, "nano")
    state = checkpoint.load_checkpoint(tmp_path / "c", other)
    assert state["step"] == 3 and torch.equal(state["extra"], torch.arange(3))
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="does not fit this model"):
        checkpoint.load_checkpoint(tmp_path / "c", models.gpt(V + 1, "nano"))
