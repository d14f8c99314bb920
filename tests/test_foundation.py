"""The package's entry points: version, device choice, seeding, quick mode, setup, report."""

import json
import re

import pytest
import torch

import ssledu


def test_version_matches_metadata():
    from importlib.metadata import version

    assert re.fullmatch(r"\d+\.\d+\.\d+", ssledu.__version__)
    assert version("ssledu") == ssledu.__version__


@pytest.mark.parametrize("value", ["cpu", "CPU", " cpu "])
def test_get_device_env_override(monkeypatch, value):
    monkeypatch.setenv("SSLEDU_DEVICE", value)
    assert ssledu.get_device() == torch.device("cpu")


def test_get_device_default_is_cuda_or_cpu(monkeypatch):
    monkeypatch.delenv("SSLEDU_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert ssledu.get_device().type == expected


def test_get_device_argument_beats_env(monkeypatch):
    monkeypatch.setenv("SSLEDU_DEVICE", "tpu")
    assert ssledu.get_device("cpu").type == "cpu"


def test_get_device_rejects_unknown(monkeypatch):
    monkeypatch.setenv("SSLEDU_DEVICE", "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'.*SSLEDU_DEVICE.*cpu, cuda"):
        ssledu.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_get_device_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setenv("SSLEDU_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available.*unset SSLEDU_DEVICE"):
        ssledu.get_device()


@pytest.mark.parametrize(
    "raw, expected",
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False),
     ("false", False), ("", False), ("off", False)],
)
def test_quick_mode_parsing(monkeypatch, raw, expected):
    monkeypatch.setenv("SSLEDU_QUICK", raw)
    assert ssledu.quick_mode() is expected


def test_quick_mode_unset_is_off(monkeypatch):
    monkeypatch.delenv("SSLEDU_QUICK", raising=False)
    assert ssledu.quick_mode() is False


def test_quick_mode_rejects_garbage(monkeypatch):
    monkeypatch.setenv("SSLEDU_QUICK", "maybe")
    with pytest.raises(ValueError, match="SSLEDU_QUICK=.maybe. is not an on/off value"):
        ssledu.quick_mode()


def test_seed_everything_repeats_draws():
    import random

    import numpy as np

    ssledu.seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(3))
    ssledu.seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    with pytest.raises(ValueError):
        ssledu.seed_everything(-1)


def test_setup_prints_three_lines(capsys, monkeypatch):
    monkeypatch.setenv("SSLEDU_QUICK", "1")
    monkeypatch.setenv("SSLEDU_DEVICE", "cpu")
    dev = ssledu.setup(seed=7)
    out = capsys.readouterr().out.strip().splitlines()
    assert dev == torch.device("cpu")
    assert len(out) == 3
    assert out[0].startswith(f"ssledu {ssledu.__version__}") and "torch" in out[0]
    assert out[1].startswith("device: cpu")
    assert out[2] == "seed: 7 | quick mode: on (SSLEDU_QUICK=1)"


def test_report_records_and_writes_sink(tmp_path, monkeypatch, capsys):
    sink = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("SSLEDU_REPORT_FILE", str(sink))
    assert ssledu.report("val_loss", torch.tensor(1.25)) == 1.25
    ssledu.report("note", "ok")
    assert capsys.readouterr().out == "", "quiet by default: stored outputs stay clean"
    ssledu.report("shown", 0.5, quiet=False)
    assert "[report] shown = 0.5" in capsys.readouterr().out
    assert ssledu.reported_metrics()["val_loss"] == 1.25
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert lines == [{"name": "val_loss", "value": 1.25}, {"name": "note", "value": "ok"},
                     {"name": "shown", "value": 0.5}]
    with pytest.raises(TypeError, match="number or a short string"):
        ssledu.report("bad", [1, 2])
    with pytest.raises(ValueError):
        ssledu.report("", 1.0)


def test_cache_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLEDU_CACHE", str(tmp_path / "c"))
    assert ssledu.cache_dir() == tmp_path / "c"
