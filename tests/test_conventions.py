"""The shared conventions: one behaviour each, pinned down."""

import sys

import pytest
import torch
from transformers import BartConfig, BertConfig, GPT2Config

from ssledu import conventions as C
from ssledu import models


# --- IGNORE_INDEX -----------------------------------------------------------------------


def test_ignore_index_is_cross_entropy_default_and_reexported():
    import torch.nn.functional as F

    from ssledu.objectives import clm, mlm, prefix

    assert C.IGNORE_INDEX == -100
    assert mlm.IGNORE_INDEX is C.IGNORE_INDEX
    assert clm.IGNORE_INDEX is C.IGNORE_INDEX
    assert prefix.IGNORE_INDEX is C.IGNORE_INDEX
    logits = torch.randn(3, 5)
    labels = torch.tensor([1, C.IGNORE_INDEX, 2])
    # the ignored row does not count: same loss as the two real rows alone
    assert torch.allclose(F.cross_entropy(logits, labels), F.cross_entropy(logits[[0, 2]], labels[[0, 2]]))


# --- eval_mode ----------------------------------------------------------------------------


def test_eval_mode_switches_and_restores_training():
    m = torch.nn.Dropout(0.5)
    m.train()
    with C.eval_mode(m) as got:
        assert got is m and not m.training
    assert m.training


def test_eval_mode_keeps_eval_model_in_eval():
    m = torch.nn.Linear(2, 2).eval()
    with C.eval_mode(m):
        pass
    assert not m.training


def test_eval_mode_restores_on_error():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    m.train()
    with pytest.raises(RuntimeError, match="boom"):
        with C.eval_mode(m):
            raise RuntimeError("boom")
    assert m.training and m[1].training


def test_eval_mode_rejects_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        with C.eval_mode("model"):
            pass


# --- env_flag -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " Yes ", "on", "On"])
def test_env_flag_true(monkeypatch, raw):
    monkeypatch.setenv("SSLEDU_TEST_FLAG", raw)
    assert C.env_flag("SSLEDU_TEST_FLAG") is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF", "", "  "])
def test_env_flag_false(monkeypatch, raw):
    monkeypatch.setenv("SSLEDU_TEST_FLAG", raw)
    assert C.env_flag("SSLEDU_TEST_FLAG", default=True) is False


def test_env_flag_unset_gives_default(monkeypatch):
    monkeypatch.delenv("SSLEDU_TEST_FLAG", raising=False)
    assert C.env_flag("SSLEDU_TEST_FLAG") is False
    assert C.env_flag("SSLEDU_TEST_FLAG", default=True) is True


@pytest.mark.parametrize("raw", ["2", "y", "enable", "tru"])
def test_env_flag_rejects_other_words(monkeypatch, raw):
    monkeypatch.setenv("SSLEDU_TEST_FLAG", raw)
    with pytest.raises(ValueError) as err:
        C.env_flag("SSLEDU_TEST_FLAG")
    msg = str(err.value)
    assert "SSLEDU_TEST_FLAG" in msg and repr(raw) in msg and "true" in msg and "off" in msg


# --- in_notebook --------------------------------------------------------------------------


def test_in_notebook_false_under_pytest():
    assert C.in_notebook() is False


def test_in_notebook_true_with_a_kernel(monkeypatch):
    class FakeShell:
        kernel = object()

    class FakeIPython:
        @staticmethod
        def get_ipython():
            return FakeShell()

    monkeypatch.setitem(sys.modules, "IPython", FakeIPython)
    assert C.in_notebook() is True


def test_in_notebook_false_in_terminal_ipython(monkeypatch):
    class TerminalInteractiveShell:
        kernel = None

    class FakeIPython:
        @staticmethod
        def get_ipython():
            return TerminalInteractiveShell()

    monkeypatch.setitem(sys.modules, "IPython", FakeIPython)
    assert C.in_notebook() is False


# --- context_length -----------------------------------------------------------------------


@pytest.mark.parametrize("config, expected", [
    (BertConfig(max_position_embeddings=77), 77),
    (GPT2Config(n_positions=33), 33),
    (BartConfig(max_position_embeddings=55), 55),
    ({"block_size": 16}, 16),
])
def test_context_length_of_configs(config, expected):
    assert C.context_length(config) == expected


def test_context_length_of_models():
    assert C.context_length(models.bert(50, "nano", max_len=40)) == 40
    assert C.context_length(models.gpt(50, "nano", max_len=24)) == 24


def test_context_length_unknown():
    with pytest.raises(ValueError, match="context length.*pass the length"):
        C.context_length(torch.nn.Linear(2, 2))


# --- pad_batch ----------------------------------------------------------------------------


def test_pad_batch_right():
    out = C.pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["input_ids"].dtype == out["attention_mask"].dtype == torch.long


def test_pad_batch_left_and_length():
    out = C.pad_batch([torch.tensor([5, 6]), [8]], pad_id=9, length=4, side="left")
    assert out["input_ids"].tolist() == [[9, 9, 5, 6], [9, 9, 9, 8]]
    assert out["attention_mask"].tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    assert out["input_ids"].shape == (2, 4)


def test_pad_batch_empty_row_is_all_padding():
    out = C.pad_batch([[], [3]], pad_id=0)
    assert out["input_ids"].tolist() == [[0], [3]]
    assert out["attention_mask"].tolist() == [[0], [1]]


@pytest.mark.parametrize("args, kwargs, exc, words", [
    (([[1, 2, 3]], 0), {"length": 2}, ValueError, ("length=2", "3 tokens")),
    (([[1]], 0), {"side": "middle"}, ValueError, ("right", "left")),
    (([], 0), {}, ValueError, ("empty",)),
    (("hello", 0), {}, TypeError, ("string", "encode")),
    (([[1.5, 2]], 0), {}, TypeError, ("integer",)),
    (([[1, -2]], 0), {}, ValueError, (">= 0",)),
    (([[1]], -1), {}, ValueError, ("pad_id",)),
])
def test_pad_batch_errors(args, kwargs, exc, words):
    with pytest.raises(exc) as err:
        C.pad_batch(*args, **kwargs)
    for w in words:
        assert w in str(err.value)


# --- check_ids ----------------------------------------------------------------------------


def test_check_ids_limits():
    assert C.check_ids([[0, 9]], vocab_size=10).dtype == torch.long
    with pytest.raises(ValueError, match=r"id 10, outside the vocabulary of 10 ids"):
        C.check_ids([[0, 10]], vocab_size=10)
    with pytest.raises(ValueError, match=">= 0"):
        C.check_ids(torch.tensor([-1]))
    with pytest.raises(TypeError, match="not a string"):
        C.check_ids("hello")
    with pytest.raises(TypeError, match="integer"):
        C.check_ids(torch.tensor([1.0]))


# --- mask threshold -----------------------------------------------------------------------


@pytest.mark.parametrize("blocked", [-1e4, -1e9, float("-inf"), torch.finfo(torch.float32).min])
def test_mask_allows_reads_every_blocking_value(blocked):
    m = torch.tensor([[0.0, blocked], [0.0, 0.0]])
    assert C.mask_allows(m).tolist() == [[True, False], [True, True]]


def test_mask_allows_fp16_and_bool():
    m = torch.tensor([0.0, -1e4, torch.finfo(torch.float16).min], dtype=torch.float16)
    assert C.mask_allows(m).tolist() == [True, False, False]
    b = torch.tensor([True, False])
    assert C.mask_allows(b).tolist() == [True, False]


def test_mask_allows_rejects_integer_masks():
    with pytest.raises(TypeError, match="bool"):
        C.mask_allows(torch.tensor([1, 0]))


def test_prefix_allowed_reads_minus_1e4_as_blocked():
    from ssledu.objectives import prefix

    m = torch.zeros(1, 1, 3, 3).masked_fill(~torch.ones(3, 3, dtype=torch.bool).tril(), -1e4)
    assert prefix.allowed(m)[0].tolist() == torch.ones(3, 3, dtype=torch.bool).tril().tolist()


def test_viz_allowed_positions_uses_same_threshold():
    from ssledu import viz

    m = torch.tensor([[0.0, -1e4], [-1e9, 0.0]])
    assert viz.allowed_positions(m).tolist() == [[True, False], [False, True]]


def test_context_length_default_for_models_without_positions():
    assert C.context_length(torch.nn.LSTM(2, 2), default=None) is None
    assert C.context_length({"n_positions": 9}, default=None) == 9


# --- one generation loop ------------------------------------------------------------------


def test_generate_and_sampling_loop_agree():
    from ssledu.objectives import clm

    torch.manual_seed(0)
    model = models.gpt(30, "nano", max_len=32).eval()
    prompt = torch.tensor([[7, 8, 9], [10, 11, 12]])
    by_generate = clm.generate(model, prompt, 6, greedy=True)  # with its key/value cache
    with torch.no_grad():
        by_loop = clm.sampling_loop(lambda ids: model(input_ids=ids).logits[:, -1], prompt, 6, greedy=True)
    assert torch.equal(by_generate, by_loop)


def test_prefix_generate_runs_the_shared_loop(monkeypatch):
    from ssledu.objectives import clm, prefix

    calls = []
    real = clm.sampling_loop

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(clm, "sampling_loop", spy)
    torch.manual_seed(0)
    model = models.bert(30, "nano", max_len=32)
    out = prefix.prefix_generate(model, torch.tensor([7, 8]), 3, greedy=True, eos_id=6)
    assert len(calls) == 1 and calls[0]["greedy"] and calls[0]["eos_id"] == 6
    assert out.shape[0] <= 5 and out[:2].tolist() == [7, 8]
