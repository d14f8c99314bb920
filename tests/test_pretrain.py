"""``ssledu pretrain`` (the pipeline, its command, torchrun) and fit's precision choice."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ssledu import cli, models, pretrain, train
from ssledu.data.tokenize import load_tokenizer

SMALL = {"batch_size": 4, "eval_every": 2, "eval_batches": 2, "checkpoint_every": 2, "precision": "fp32",
         "model": {"max_len": 32, "n_layer": 1}, "tokenizer": {"kind": "char"}}


@pytest.fixture
def corpus(tmp_path):
    """A folder of the user's own .txt files (one in a sub-folder)."""
    folder = tmp_path / "texts"
    (folder / "more").mkdir(parents=True)
    for i in range(12):
        sub = folder / "more" if i % 4 == 0 else folder
        (sub / f"story{i:02d}.txt").write_text(
            f"The {['red', 'blue', 'green'][i % 3]} fox {i} runs to the river and back again. " * 6,
            encoding="utf-8")
    (folder / "notes.md").write_text("not a .txt file: ignored", encoding="utf-8")
    return folder


@pytest.fixture
def config(tmp_path):
    file = tmp_path / "small.json"
    file.write_text(json.dumps(SMALL), encoding="utf-8")
    return file


def _cli(capsys, *argv):
    code = cli.main(["pretrain", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- the pipeline -------------------------------------------------------------------------


@pytest.mark.parametrize("objective", pretrain.OBJECTIVES)
def test_every_objective_starts_near_ln_vocab_and_writes_a_loadable_model(objective, corpus, config, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / objective
    s = pretrain.pretrain(objective, corpus, preset="nano", out=out, steps=2, config=config, progress=False,
                          lr=1e-4)
    tok = load_tokenizer(out / "tokenizer")
    # a random network guesses about uniformly: its loss is about ln |V| (nats per token)
    assert abs(s["train_loss"] - math.log(len(tok))) < 0.6, (s["train_loss"], math.log(len(tok)))
    assert s["steps"] == 2 and s["processes"] == 1 and s["precision"] == "fp32"
    assert s["perplexity"] == pytest.approx(math.exp(s["val_loss"]), rel=1e-4)
    accuracy = "masked_accuracy" if objective == "mlm" else "token_accuracy"
    assert 0.0 <= s[accuracy] <= 1.0
    cls = type(pretrain._objective_parts(objective, tok, SMALL["model"], "nano", 0, 0)[0])
    loaded = cls.from_pretrained(out / "checkpoint")
    assert models.count_parameters(loaded) == s["params"]
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))


def test_command_runs_resumes_and_prints_json_only(corpus, config, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    code, stdout, _ = _cli(capsys, "clm", "--corpus", corpus, "--steps", 4, "--config", config, "--out", out, "--json")
    assert code == 0
    first = json.loads(stdout)  # nothing but JSON on stdout
    assert first["steps"] == 4 and first["corpus"] == "texts" and first["stopped"] == "max_steps"
    record = json.loads((out / "pretrain.json").read_text())
    assert (record["objective"], record["preset"], record["processes"]) == ("clm", "nano", 1)
    state = torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 4
    with pytest.warns(UserWarning, match="another budget"):  # a longer run: the schedule stretches
        code, stdout, _ = _cli(capsys, "clm", "--corpus", corpus, "--steps", 6, "--config", config, "--out", out,
                               "--resume")
    assert code == 0
    assert stdout.startswith("pretrained clm nano on texts (1 process, cpu, fp32")
    assert "6 steps" in stdout and "val loss" in stdout and "perplexity" in stdout
    state = torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 6 and [s["step"] for s in state["history"]["steps"]] == list(range(1, 7))


def test_a_run_stopped_by_ctrl_c_resumes_to_the_uninterrupted_result(corpus, config, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    whole = pretrain.pretrain("mlm", corpus, out=tmp_path / "a", steps=5, config=config, progress=False)
    real, calls = pretrain.TokenLoss.__call__, []

    def interrupted(self, model, batch):  # Ctrl-C during the 4th training step
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == 4:
                raise KeyboardInterrupt
        return real(self, model, batch)

    monkeypatch.setattr(pretrain.TokenLoss, "__call__", interrupted)
    stopped = pretrain.pretrain("mlm", corpus, out=tmp_path / "b", steps=5, config=config, progress=False)
    assert stopped["stopped"] == "interrupted" and stopped["steps"] == 3
    monkeypatch.setattr(pretrain.TokenLoss, "__call__", real)
    resumed = pretrain.pretrain("mlm", corpus, out=tmp_path / "b", steps=5, config=config, progress=False,
                                resume=True)
    assert (resumed["steps"], resumed["train_loss"], resumed["val_loss"]) == \
        (5, whole["train_loss"], whole["val_loss"])  # masks, order and schedule as if never stopped


def test_token_loss_is_the_mean_over_label_tokens():
    torch.manual_seed(0)
    model = models.gpt(30, "nano", max_len=8, n_layer=1, dropout=0.0)
    ids = torch.randint(7, 30, (2, 8))
    labels = ids.clone()
    labels[1, 3:] = -100  # the second row predicts fewer tokens
    loss, metrics = pretrain.TokenLoss(shift=True)(model, {"input_ids": ids, "labels": labels})
    expected = model(input_ids=ids, labels=labels).loss  # transformers' own shifted mean
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-5)
    assert 0.0 <= float(metrics["token_accuracy"]) <= 1.0


# --- bad input: a clear error, exit status 2, nothing overwritten ----------------------------


def test_unknown_objective_and_preset_are_usage_errors(corpus, tmp_path, capsys):
    for argv, words in ((["simclr"], ["invalid choice: 'simclr'", "mlm", "denoise"]),
                        (["mlm", "--preset", "huge"], ["--preset", "invalid choice: 'huge'", "nano"])):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["pretrain", *argv, "--corpus", str(corpus), "--steps", "1", "--out", str(tmp_path / "x")])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), err
    with pytest.raises(ValueError, match="unknown objective 'simclr'; available: mlm, clm, prefix, denoise"):
        pretrain.pretrain("simclr", corpus, out=tmp_path / "y", steps=1)
    with pytest.raises(ValueError, match="unknown preset 'huge'; available: nano, tiny, small"):
        pretrain.pretrain("mlm", corpus, preset="huge", out=tmp_path / "y", steps=1)
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "mlm", "--corpus", str(corpus), "--out", str(tmp_path / "x")])
    assert "one of the arguments --steps --seconds is required" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_empty_corpus_folder_says_what_to_put_there(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _cli(capsys, "mlm", "--corpus", empty, "--steps", 1, "--out", tmp_path / "out")
    assert code == 2 and "holds no .txt files" in err and str(empty) in err
    (empty / "blank.txt").write_text("  \n", encoding="utf-8")
    code, _, err = _cli(capsys, "mlm", "--corpus", empty, "--steps", 1, "--out", tmp_path / "out")
    assert code == 2 and "all 1 .txt files" in err and "empty" in err
    code, _, err = _cli(capsys, "mlm", "--corpus", "toyworl", "--steps", 1, "--out", tmp_path / "out")
    assert code == 2 and "toyworld" in err  # the hub's "did you mean"


def test_unwritable_out_is_refused_before_any_work(corpus, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me", encoding="utf-8")
    code, _, err = _cli(capsys, "clm", "--corpus", corpus, "--steps", 1, "--out", blocker / "run")
    assert code == 2 and "cannot write to --out" in err and "a folder you can write to" in err
    code, _, err = _cli(capsys, "clm", "--corpus", corpus, "--steps", 1, "--out", blocker)
    assert code == 2 and "is a file" in err
    assert blocker.read_text(encoding="utf-8") == "keep me"


def test_resume_of_another_objective_or_a_used_folder_overwrites_nothing(corpus, config, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(capsys, "clm", "--corpus", corpus, "--steps", 2, "--config", config, "--out", out)[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = _cli(capsys, "mlm", "--corpus", corpus, "--steps", 4, "--config", config, "--out", out, "--resume")
    assert code == 2 and "holds a clm nano run, not mlm nano" in err and "ssledu pretrain clm" in err
    code, _, err = _cli(capsys, "clm", "--corpus", corpus, "--steps", 4, "--config", config, "--out", out)
    assert code == 2 and "already holds a clm run; pass --resume" in err
    code, _, err = _cli(capsys, "clm", "--corpus", corpus, "--steps", 4, "--out", tmp_path / "new", "--resume")
    assert code == 2 and "holds no pretraining run" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.txt").write_text("mine", encoding="utf-8")
    code, _, err = _cli(capsys, "clm", "--corpus", corpus, "--steps", 4, "--out", tmp_path / "other")
    assert code == 2 and "is not empty" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (tmp_path / "other" / "thesis.txt").read_text() == "mine"


def test_bad_config_files_name_the_setting(corpus, tmp_path, capsys):
    file = tmp_path / "c.json"
    for text, words in (('{"learning_rate": 1}', ["unknown setting(s) learning_rate", "lr"]),
                        ('{"lr": 1e-3,}', ["not valid JSON"]),
                        ('{"tokenizer": {"size": 9}}', ["unknown tokenizer setting(s) size", "vocab_size"]),
                        ('{"model": 3}', ["'model' must be a table"])):
        file.write_text(text, encoding="utf-8")
        code, _, err = _cli(capsys, "mlm", "--corpus", corpus, "--steps", 1, "--config", file, "--out",
                            tmp_path / "o")
        assert code == 2 and all(w in err for w in words), err


# --- under torchrun: the same command, 2 processes ----------------------------------------


def test_the_same_command_under_torchrun_with_two_processes(corpus, config, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "ssledu", "pretrain", "clm",
                          "--corpus", str(corpus), "--steps", "3", "--config", str(config), "--out", str(out),
                          "--json"], capture_output=True, text=True, env=env, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)  # rank 0 alone prints: one JSON document
    assert summary["processes"] == 2 and summary["steps"] == 3 and summary["batch"].startswith("2x4x")
    assert json.loads((out / "pretrain.json").read_text())["processes"] == 2
    assert torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=False)["step"] == 3


# --- fit's precision: "auto" = bf16 where the hardware has it ---------------------------------


@pytest.mark.parametrize("flags, native", [({"avx512_bf16", "avx2"}, True), ({"amx_bf16"}, True),
                                           ({"bf16"}, True), ({"avx2", "avx512f"}, False), (set(), False)])
def test_native_bf16_reads_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(train, "_cpu_flags", lambda: frozenset(flags))
    assert train.native_bf16("cpu") is native
    assert train._use_bf16(torch.device("cpu"), "auto") is native
    assert train._use_bf16(torch.device("cpu"), None) is False  # fit's default: fp32 on every CPU
    assert train._use_bf16(torch.device("cpu"), "bf16") is True
    assert train._use_bf16(torch.device("cpu"), "fp32") is False


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(train, "_cpu_flags", lambda: frozenset())
    cuda = torch.device("cuda")
    assert train._use_bf16(cuda, "auto") is bf16 and train._use_bf16(cuda, None) is bf16


def test_auto_changes_nothing_on_a_cpu_without_native_bf16(monkeypatch):
    torch.set_num_threads(1)
    rows = torch.randint(7, 40, (16, 12), generator=torch.Generator().manual_seed(0))

    def losses(precision):
        torch.manual_seed(0)
        model = models.gpt(40, "nano", max_len=12, n_layer=1, dropout=0.0)
        h = train.fit(model, rows, collate_fn=lambda r: {"input_ids": torch.stack(r), "labels": torch.stack(r)},
                      batch_size=8, max_steps=3, precision=precision, device="cpu", progress=False, live_plot=False)
        return [s["loss"] for s in h.steps]

    monkeypatch.setattr(train, "_cpu_flags", lambda: frozenset({"avx2"}))
    fp32 = losses("fp32")
    assert losses("auto") == fp32 and losses(None) == fp32  # bit for bit
    monkeypatch.setattr(train, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    auto = losses("auto")
    assert auto != fp32 and auto == pytest.approx(fp32, abs=0.05)  # bf16 did run, and still learns


def test_help_shows_the_flags_and_the_torchrun_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["pretrain", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ssledu pretrain")
    for flag in ("--corpus", "--preset", "--steps", "--seconds", "--config", "--out", "--resume", "--json"):
        assert flag in out
    assert "torchrun --standalone --nproc_per_node 2 -m ssledu pretrain" in out
