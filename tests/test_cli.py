"""The `ssledu` command: doctor, bench and course through one parser (`cli.main`)."""

import json
import subprocess
import sys

import pytest

from ssledu import cli


def test_doctor_ok_here(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[FAIL]" not in out
    for name in ("torch", "transformers", "datasets", "tokenizers", "jupyterlab", "ipywidgets", "nbval"):
        assert name in out
    assert "corpus toyworld" in out and "corpus pydocs" in out and "corpus digits" in out
    assert "All required parts work." in out


def test_doctor_fails_when_a_package_looks_missing(monkeypatch, capsys):
    real = cli._installed_version
    monkeypatch.setattr(cli, "_installed_version", lambda d: None if d == "transformers" else real(d))
    assert cli.main(["doctor", "--no-corpora"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] transformers - " in out and "not installed" in out
    assert 'pip install -e ".[course]"' in out


def test_doctor_flags_version_outside_range(monkeypatch, capsys):
    real = cli._installed_version
    monkeypatch.setattr(cli, "_installed_version", lambda d: "4.40.0" if d == "transformers" else real(d))
    assert cli.main(["doctor", "--no-corpora", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert any("transformers" in p and "outside the tested range" in p for p in report["problems"])


def test_doctor_reports_data_dir(tmp_path, monkeypatch, capsys):
    (tmp_path / "sst2").mkdir()
    monkeypatch.setenv("SSLEDU_DATA_DIR", str(tmp_path))
    assert cli.main(["doctor", "--no-corpora", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data_dir"]["contents"] == ["sst2/"]


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ssledu.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("ssledu ")


# The `course` subcommand is tested in tests/test_course.py.


# --- doctor: settings and JSON ------------------------------------------------------------

_SETTINGS = ("SSLEDU_QUICK", "SSLEDU_WIDGETS", "SSLEDU_HUB_TIMEOUT", "SSLEDU_DEVICE")


@pytest.mark.parametrize("name, value, fix", [
    ("SSLEDU_QUICK", "maybe", "Fix: unset SSLEDU_QUICK for full runs or set SSLEDU_QUICK=1"),
    ("SSLEDU_WIDGETS", "perhaps", "Fix: unset SSLEDU_WIDGETS"),
    ("SSLEDU_HUB_TIMEOUT", "soon", "Fix: unset SSLEDU_HUB_TIMEOUT (15 s)"),
    ("SSLEDU_DEVICE", "tpu", "Fix: unset SSLEDU_DEVICE"),
])
def test_doctor_reports_a_setting_the_chapters_reject(monkeypatch, capsys, name, value, fix):
    for var in _SETTINGS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(name, value)
    assert cli.main(["doctor", "--no-corpora"]) == 1
    out = capsys.readouterr().out
    assert f"[FAIL] {name} {value}:" in out and fix in out
    assert "All required parts work." not in out
    assert 'pip install -e ".[course]"' not in out, "a bad setting is not fixed by reinstalling"


def test_doctor_shows_good_settings(monkeypatch, capsys):
    monkeypatch.setenv("SSLEDU_QUICK", "1")
    monkeypatch.setenv("SSLEDU_WIDGETS", "off")
    monkeypatch.setenv("SSLEDU_HUB_TIMEOUT", "30")
    assert cli.main(["doctor", "--no-corpora"]) == 0
    out = capsys.readouterr().out
    assert "[OK]   SSLEDU_QUICK 1: quick mode" in out
    assert "[OK]   SSLEDU_WIDGETS off: live controls off" in out
    assert "[OK]   SSLEDU_HUB_TIMEOUT 30: hub sources get 30 s to answer" in out


def test_doctor_json_prints_json_only(monkeypatch, capsys):
    monkeypatch.delenv("SSLEDU_QUICK", raising=False)
    monkeypatch.setenv("SSLEDU_WIDGETS", "maybe")
    # whatever a check prints on the way must not spoil the JSON on stdout
    monkeypatch.setattr(cli, "_check_cache", lambda: print("extracting ...") or
                        {"path": "/x", "ok": True, "detail": "writable"})
    assert cli.main(["doctor", "--no-corpora", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # the whole of stdout
    assert "extracting ..." in captured.err
    assert any(p.startswith("SSLEDU_WIDGETS:") for p in report["problems"])
    assert any("SSLEDU_WIDGETS" in f for f in report["fixes"])


# --- one parser tree: every subcommand through cli.main --------------------------------


def test_building_the_parser_is_light():
    code = "import sys; from ssledu import cli; cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_help_of_every_subcommand(capsys):
    for command in ("doctor", "course", "bench"):
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "-h"])
        assert exit_.value.code == 0
        assert f"usage: ssledu {command}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = capsys.readouterr().out
    for flag in ("--target", "--presets", "--steps", "--batch-size", "--threads", "--json"):
        assert flag in out
    assert "ssledu bench --target shakespeare-char --seconds 75 --repeats 2 --json" in out


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "0"], ["--batch-size", "1 or more", "'0'"]),
    (["--steps", "0"], ["--steps", "1 or more"]),
    (["--threads", "-1"], ["--threads", "1 or more"]),
    (["--repeats", "0"], ["--repeats", "1 or more"]),
    (["--seq-len", "ten"], ["--seq-len", "'ten'"]),
    (["--seconds", "0"], ["--seconds", "above 0"]),
    (["--lr=-0.001"], ["--lr", "above 0"]),
    (["--presets", "huge"], ["--presets", "unknown preset 'huge'", "nano, tiny, small"]),
    (["--presets", ","], ["--presets", "at least one preset"]),
    (["--objectives", "mlm,simclr"], ["--objectives", "unknown objective 'simclr'", "mlm, clm, denoise"]),
    (["--target", "imagenet"], ["--target", "invalid choice"]),
    (["--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
])
def test_bench_rejects_bad_values_with_argparse_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ssledu")
    for word in words:
        assert word in err


def test_bench_throughput_example_tiny(capsys):
    # documented: ssledu bench --presets nano,tiny --steps 20 (here: the smallest run)
    rc = cli.main(["bench", "--presets", "nano", "--objectives", "clm", "--steps", "1", "--batch-size", "2",
                   "--seq-len", "8", "--no-overhead", "--json"])
    out = json.loads(capsys.readouterr().out)  # stdout holds JSON only
    assert rc == 0
    assert [(r["objective"], r["preset"], r["batch"]) for r in out["throughput"]] == [("clm", "nano", "2x8")]
    assert out["throughput"][0]["tokens_per_s"] > 0 and "fit_overhead" not in out
    rc = cli.main(["bench", "--presets", "nano", "--objectives", "clm", "--steps", "1", "--batch-size", "2",
                   "--seq-len", "8", "--no-overhead", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "tokens_per_s" in out and "clm" in out and "1 threads" in out


def test_bench_target_example_tiny(tmp_path, capsys):
    # documented: ssledu bench --target shakespeare-char --seconds 75 --repeats 2 --json
    text = "\n".join(f"KING {i % 7}:\nmy lord, good night to thee and thine.\n" for i in range(80))
    (tmp_path / "input.txt").write_text(text, encoding="utf-8")
    rc = cli.main(["bench", "--target", "shakespeare-char", "--seconds", "0.3", "--repeats", "2", "--json",
                   "--data", str(tmp_path / "input.txt")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1, "0.3 s of training does not reach 1.90 nats/char"
    runs = out["shakespeare_char"]
    assert len(runs) == 2 and not any(r["reached"] for r in runs)
    assert all(r["settings"]["max_seconds"] == 0.3 and r["final_val_loss"] > 1.9 for r in runs)


def test_bench_target_without_data_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSLEDU_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SSLEDU_SHARED_DATA", str(tmp_path))
    assert cli.main(["bench", "--target", "shakespeare-char", "--data", str(tmp_path / "none.txt")]) == 2
    err = capsys.readouterr().err
    assert "none.txt: no such file" in err and "tinyshakespeare/input.txt" in err


def test_course_lists_the_chapters(capsys):
    assert cli.main(["course"]) == 0
    assert "01_self_supervised_paradigm" in capsys.readouterr().out
