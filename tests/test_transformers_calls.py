"""The package's own calls into transformers raise no warning, and setup() silences its bars.

A FutureWarning today is an error in a later release that pyproject still allows
(transformers < 6): every call the chapters make is run here with warnings as errors and
with transformers' own logged deprecations (``logger.warning_once``) counted as failures.
"""

import functools
import logging
import warnings
from contextlib import contextmanager

import pytest
import torch

import ssledu
from ssledu import models, train
from ssledu.baselines import LSTMLanguageModel
from ssledu.objectives import clm

pytestmark = pytest.mark.usefixtures("one_thread")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextmanager
def strict():
    """Python warnings raise; transformers' logged warnings are collected and must be none."""
    import transformers.utils.logging as tlog

    tlog.warning_once.cache_clear()  # a deprecation logged once earlier would hide here
    handler = _Collect()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in handler.records] == []


def test_generate_with_the_cache_warns_nothing():
    torch.manual_seed(0)
    gpt = models.gpt(24, "nano")
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with strict():
        cached = clm.generate(gpt, prompt, 8, seed=0)
        greedy = clm.generate(gpt, prompt, 8, greedy=True)
    # the cache changes the cost, not the result
    assert torch.equal(cached, clm.generate(gpt, prompt, 8, seed=0, use_cache=False))
    assert torch.equal(greedy, clm.generate(gpt, prompt, 8, greedy=True, use_cache=False))
    lstm = LSTMLanguageModel(24, d_model=16, n_layer=1, dropout=0.0)
    with strict():
        cached = clm.generate(lstm, prompt, 8, seed=1)
    assert torch.equal(cached, clm.generate(lstm, prompt, 8, seed=1, use_cache=False))


def test_generate_hands_transformers_a_dynamic_cache(monkeypatch):
    from transformers import DynamicCache

    gpt = models.gpt(24, "nano")
    seen = []
    forward = gpt.forward

    @functools.wraps(forward)  # keeps the signature that generate reads
    def spy(*args, **kwargs):
        seen.append({k: type(v).__name__ for k, v in kwargs.items() if k in ("cache", "past_key_values")})
        return forward(*args, **kwargs)

    monkeypatch.setattr(gpt, "forward", spy)
    clm.generate(gpt, torch.tensor([1, 2]), 3, greedy=True)
    assert len(seen) == 3 and all(len(s) == 1 for s in seen)
    assert {name for s in seen for name in s.values()} == {DynamicCache.__name__}


def test_model_builders_fit_and_save_load_warn_nothing(tmp_path):
    with strict():
        gpt = models.gpt(24, "nano")
        models.bert(24, "nano")
        models.bart(24, "nano")
        blocks = torch.arange(48).reshape(4, 12) % 24
        history = train.fit(gpt, blocks, collate_fn=clm.clm_collator(pad_id=0), batch_size=2, max_steps=1,
                            progress=False, live_plot=False)
        gpt.save_pretrained(tmp_path / "gpt")
        loaded = type(gpt).from_pretrained(tmp_path / "gpt")
    assert len(history.steps) == 1
    assert torch.equal(loaded.transformer.wte.weight, gpt.transformer.wte.weight)


@pytest.fixture
def bars_on():
    """Progress bars on before the test, and back on after it (other tests expect defaults)."""
    import huggingface_hub.utils
    import transformers.utils.logging as tlog

    def enable():
        tlog.enable_progress_bar()
        huggingface_hub.utils.enable_progress_bars()

    enable()
    yield
    enable()


def test_setup_silences_transformers_progress_bars(tmp_path, capfd, bars_on, monkeypatch):
    import huggingface_hub.utils
    import transformers.utils.logging as tlog

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    gpt = models.gpt(24, "nano")
    ssledu.setup(quiet=True)
    assert not tlog.is_progress_bar_enabled()
    assert huggingface_hub.utils.are_progress_bars_disabled()
    capfd.readouterr()
    gpt.save_pretrained(tmp_path / "gpt")
    type(gpt).from_pretrained(tmp_path / "gpt")
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "Loading weights" not in err, err
    # the same calls with the bars on do print them: the check above can fail
    tlog.enable_progress_bar()
    gpt.save_pretrained(tmp_path / "again")
    assert "Writing model shards" in capfd.readouterr().err
