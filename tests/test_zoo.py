"""ssledu.zoo: named networks saved and loaded back exactly, per mode, atomically."""

import json

import pytest
import torch

from ssledu import models, zoo
from ssledu.data.tokenize import train_tokenizer
from ssledu.objectives.contrastive import DigitEncoder

TEXTS = ["the red circle is left of the blue square", "a small green triangle"] * 4


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLEDU_CACHE", str(tmp_path))
    monkeypatch.delenv("SSLEDU_QUICK", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, kind="word")


def bert(tok, seed=0):
    torch.manual_seed(seed)
    return models.bert(tok, "nano", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64)


def test_transformers_model_round_trip_with_tokenizer(tok, cache):
    model = bert(tok).train()
    folder = zoo.save("ch02-mlm-toyworld", model, tok, metrics={"acc": 0.5})
    assert folder == cache / "checkpoints" / "ch02-mlm-toyworld"
    back = zoo.load("ch02-mlm-toyworld")
    assert type(back) is type(model) and not back.training
    ids = torch.tensor([tok("the red circle")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(back(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    assert zoo.load_tokenizer("ch02-mlm-toyworld").get_vocab() == tok.get_vocab()
    meta = zoo.info("ch02-mlm-toyworld")
    assert meta["metrics"] == {"acc": 0.5} and meta["quick"] is False
    assert zoo.names() == ["ch02-mlm-toyworld"] and zoo.exists("ch02-mlm-toyworld")


def test_plain_torch_module_round_trip():
    torch.manual_seed(0)
    enc = DigitEncoder(width=8, feature_dim=16, projection_dim=8)
    zoo.save("ch06-simclr-digits", enc)
    back = zoo.load("ch06-simclr-digits")
    x = torch.rand(3, 1, 8, 8)
    assert isinstance(back, DigitEncoder) and not back.training
    assert torch.equal(back.features(x), enc.eval().features(x))


def test_quick_mode_never_replaces_the_full_network(tok, monkeypatch):
    zoo.save("ch04-unilm", bert(tok, seed=0))
    monkeypatch.setenv("SSLEDU_QUICK", "1")
    quick_folder = zoo.save("ch04-unilm", bert(tok, seed=1))
    assert quick_folder.name == "ch04-unilm-quick"
    full = zoo.load("ch04-unilm", quick=False)
    quick = zoo.load("ch04-unilm")
    w = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(full.state_dict()[w], quick.state_dict()[w])
    assert torch.equal(full.state_dict()[w], bert(tok, seed=0).state_dict()[w])


def test_missing_network_names_its_chapter_and_the_other_mode(tok, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"chapter 05 \(denoising"):
        zoo.load("ch05-bart-infill")
    monkeypatch.setenv("SSLEDU_QUICK", "1")
    zoo.save("ch05-bart-infill", bert(tok))
    monkeypatch.setenv("SSLEDU_QUICK", "0")
    with pytest.raises(FileNotFoundError, match=r"quick=True"):
        zoo.load("ch05-bart-infill")
    with pytest.raises(FileNotFoundError, match="save it first"):
        zoo.load("my-own-net")
    with pytest.raises(FileNotFoundError, match="without a tokenizer"):
        zoo.load_tokenizer("ch05-bart-infill", quick=True)


def test_a_failed_save_keeps_the_previous_network(tok, cache, monkeypatch):
    zoo.save("ch05-electra-disc", bert(tok, seed=0))

    def disk_full(self, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DigitEncoder, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        zoo.save("ch05-electra-disc", DigitEncoder(width=8))
    root = cache / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["ch05-electra-disc"]  # no tmp left over
    assert type(zoo.load("ch05-electra-disc")).__name__ == "BertForMaskedLM"


def test_networks_saved_before_the_zoo_still_load(tok, cache):
    folder = cache / "checkpoints" / "ch02-mlm-toyworld"
    model = bert(tok)
    model.save_pretrained(folder)
    assert type(zoo.load("ch02-mlm-toyworld")) is type(model)


@pytest.mark.parametrize("name", ["", "Ch05", "a b", "../x", "net-quick", 5, "x" * 101])
def test_bad_names(name):
    with pytest.raises(ValueError, match="zoo name"):
        zoo.path(name)


def test_refuses_foreign_classes(tmp_path, cache):
    class Mine(torch.nn.Linear):
        def save(self, folder):
            pass

        @classmethod
        def load(cls, folder):
            return cls(1, 1)

    with pytest.raises(TypeError, match="course's and transformers'"):
        zoo.save("mine", Mine(1, 1))
    with pytest.raises(TypeError, match="save_pretrained"):
        zoo.save("mine", torch.nn.Linear(1, 1))
    folder = cache / "checkpoints" / "evil"
    folder.mkdir(parents=True)
    (folder / zoo.ZOO_FILE).write_text(json.dumps({"class": "os:system"}))
    with pytest.raises(ValueError, match="refusing"):
        zoo.load("evil")
    (folder / zoo.ZOO_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        zoo.load("evil")


RECIPE_MD = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# 98 — a recipe

```{code-cell} ipython3
import torch
from ssledu import quick_mode, zoo
from ssledu.objectives.contrastive import DigitEncoder
torch.manual_seed(0)
```

```{code-cell} ipython3
FAIL
zoo.save("ch98-digits", DigitEncoder(width=4, feature_dim=8, projection_dim=4), metrics={"quick": quick_mode()})
```
"""


def _recipe_chapters(tmp_path, fail=False):
    folder = tmp_path / "chapters"
    folder.mkdir()
    (folder / "98_recipe.md").write_text(RECIPE_MD.replace("FAIL\n", "raise SystemError('boom')\n" if fail else ""))
    return folder


def test_ensure_trains_a_missing_network_by_running_its_chapter(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(zoo.RECIPES, "ch98-digits", "chapter 98 (a recipe)")
    monkeypatch.setitem(zoo.RECIPE_SECONDS, "98", (600, 20))
    monkeypatch.setenv("SSLEDU_QUICK", "1")
    folder = _recipe_chapters(tmp_path)
    assert not zoo.exists("ch98-digits")
    assert zoo.ensure("ch98-digits", chapters_dir=folder) == [zoo.path("ch98-digits")]
    out = capsys.readouterr()
    assert "ch98-digits" in out.out and "about 20 s" in out.out and "(quick mode)" in out.out
    assert zoo.info("ch98-digits")["metrics"] == {"quick": 1.0}  # ran in the caller's mode
    assert not zoo.exists("ch98-digits", quick=False)
    assert (tmp_path / "recipes" / "98_recipe.ipynb").is_file()
    # present now: nothing runs again (a broken chapter folder would fail if it did)
    assert zoo.ensure("ch98-digits", chapters_dir=tmp_path / "nowhere") == [zoo.path("ch98-digits")]


def test_ensure_reports_a_failing_chapter_and_names_without_recipes(tmp_path, monkeypatch):
    monkeypatch.setitem(zoo.RECIPES, "ch98-digits", "chapter 98 (a recipe)")
    folder = _recipe_chapters(tmp_path, fail=True)
    with pytest.raises(RuntimeError, match="98_recipe.*boom"):
        zoo.ensure("ch98-digits", chapters_dir=folder)
    assert not zoo.exists("ch98-digits")
    with pytest.raises(ValueError, match="no recipe"):
        zoo.ensure("my-own-net", chapters_dir=folder)
    with pytest.raises(FileNotFoundError, match="not on this machine.*98"):
        zoo.ensure("ch98-digits", chapters_dir=tmp_path / "nowhere")
