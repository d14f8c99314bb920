"""Chapter 10 helpers: completion batches, chains with and without a stop, majority vote."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from ssledu import models
from ssledu.conventions import IGNORE_INDEX
from ssledu.data import scratchpad as sp
from ssledu.data.tokenize import train_tokenizer
from ssledu.objectives import reasoning
from ssledu.train import fit


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([sp.ALPHABET], kind="char")


def test_encode_completions_layout(tok):
    ex = reasoning.encode_completions(tok, ["12+34="], ["46"])[0]
    assert ex["input_ids"][0] == tok.bos_token_id and ex["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(ex["input_ids"][1:-1]) == "12+34=46"
    assert ex["prompt_length"] == 1 + len("12+34=")
    with pytest.raises(ValueError, match="one of each"):
        reasoning.encode_completions(tok, ["1+2="], [])
    with pytest.raises(TypeError, match="lists of strings"):
        reasoning.encode_completions(tok, "1+2=", "3")


def test_collator_scores_the_completion_and_its_eos_only(tok):
    exs = reasoning.encode_completions(tok, ["1+2=", "345+678="], ["3", "1023"])
    batch = reasoning.completion_collator(tok.pad_token_id)(exs)
    labels, ids = batch["labels"], batch["input_ids"]
    assert labels.shape == ids.shape == (2, 1 + 8 + 4 + 1)
    for row, ex in enumerate(exs):
        n, p = len(ex["input_ids"]), ex["prompt_length"]
        assert (labels[row, :p] == IGNORE_INDEX).all() and (labels[row, n:] == IGNORE_INDEX).all()
        assert torch.equal(labels[row, p:n], ids[row, p:n])
    # the model's loss is the mean cross-entropy over exactly those completion tokens
    torch.manual_seed(0)
    model = models.gpt(tok, "nano", max_len=32, dropout=0.0)
    out = model(**batch)
    keep = labels[:, 1:] != IGNORE_INDEX
    by_hand = F.cross_entropy(out.logits[:, :-1][keep], ids[:, 1:][keep])
    assert keep.sum() == (1 + 1) + (4 + 1)  # answer tokens + [EOS], nothing of the prompt
    assert out.loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_collator_rejects_plain_id_lists(tok):
    with pytest.raises(TypeError, match="encode_completions"):
        reasoning.completion_collator(0)([[5, 7, 8]])
    with pytest.raises(ValueError, match="pad_id"):
        reasoning.completion_collator(-1)


def test_training_on_scratchpads_starts_near_uniform_and_falls(tok):
    problems = sp.make_problems(256, range(1, 3), seed=0)
    exs = reasoning.encode_completions(tok, [p.prompt for p in problems],
                                       [sp.target_text(p, "scratchpad") for p in problems])
    torch.manual_seed(0)
    model = models.gpt(tok, "nano", max_len=32, dropout=0.0)
    h = fit(model, exs, collate_fn=reasoning.completion_collator(tok.pad_token_id), batch_size=32,
            lr=3e-3, max_steps=40, seed=0, progress=False, live_plot=False)
    losses = [s["loss"] for s in h.steps]
    assert losses[0] == pytest.approx(math.log(len(tok)), abs=0.3)  # a uniform guess over the vocabulary
    assert losses[-1] < 0.6 * losses[0]


class _Scripted(torch.nn.Module):
    """A 'model' that writes ``script`` after any prompt, then [EOS], then 9s forever."""

    def __init__(self, tok, script: str):
        super().__init__()
        self._eq = tok.convert_tokens_to_ids("=")
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.V, self.eos = len(tok), tok.eos_token_id
        self.plan = tok(script, add_special_tokens=False)["input_ids"] + [self.eos]
        self.nine = tok.convert_tokens_to_ids("9")
        self.config = SimpleNamespace(n_positions=64)

    def forward(self, input_ids, attention_mask=None, **kw):
        B, L = input_ids.shape
        logits = torch.zeros(B, L, self.V)
        for b in range(B):
            row = input_ids[b].tolist()  # [BOS] prompt ... : the prompt ends at the first '='

            done = len(row) - (row.index(self._eq) + 1) if self._eq in row else 0
            nxt = self.plan[done] if done < len(self.plan) else self.nine
            logits[b, -1, nxt] = 10.0
        return SimpleNamespace(logits=logits)


def test_complete_stops_at_eos_or_runs_the_budget(tok):
    model = _Scripted(tok, "2+1+0=03;3")
    prompts = ["1+2=", "11+22=", "3+4="]  # two lengths: grouped, returned in the input order
    stopped = reasoning.complete(model, tok, prompts, max_new_tokens=20)
    assert stopped == [["2+1+0=03;3"]] * 3
    running = reasoning.complete(model, tok, prompts, max_new_tokens=20, stop_at_eos=False)
    assert running[1] == ["2+1+0=03;3" + "9" * 9]  # [EOS] dropped, the 9s after it kept
    assert sp.verify_trace(sp.Problem(1, 2, 1), running[0][0]).correct is False
    with pytest.raises(ValueError, match="num_samples=1"):
        reasoning.complete(model, tok, prompts, max_new_tokens=5, num_samples=3)
    sampled = reasoning.complete(model, tok, prompts, max_new_tokens=20, greedy=False, num_samples=4)
    assert [len(s) for s in sampled] == [4, 4, 4]


def test_majority_vote_on_constructed_cases():
    assert reasoning.majority_vote(["12", "13", "13", None, None, None]) == ("13", 2)  # None never wins
    assert reasoning.majority_vote(["7", "8", "8", "7"]) == ("7", 2)  # a tie goes to the first seen
    assert reasoning.majority_vote(["8", "7", "8", "7"]) == ("8", 2)
    assert reasoning.majority_vote(["7", "8", "7", "8"]) == ("7", 2)
    assert reasoning.majority_vote([None, None]) == (None, 0)
    assert reasoning.majority_vote([]) == (None, 0)
    with pytest.raises(TypeError, match="one per chain"):
        reasoning.majority_vote("123")


def test_vote_accuracy_on_constructed_cases():
    answers = [["5", "5", "4"], ["1", "2", "2"], [None, None, "9"]]
    truths = ["5", "1", "9"]
    acc = reasoning.vote_accuracy(answers, truths, [1, 3], draws=3000, seed=0)
    assert acc[3] == pytest.approx(2 / 3)  # problem 1 and 3 (the lone answer wins), not 2
    # k = 1 is the mean share of right chains: (2/3 + 1/3 + 1/3) / 3
    assert acc[1] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3, abs=0.02)
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        reasoning.vote_accuracy(answers, truths, [4])
    with pytest.raises(ValueError, match="truths"):
        reasoning.vote_accuracy(answers, truths[:2], [1])


def test_checked_steps_marks_each_step_against_the_key():
    from ssledu import widgets

    p = sp.Problem(15, 17, 2)
    rows = sp.compare_steps(p, "5+7+0=12,1+1+0=02;22")
    assert [r["ok"] for r in rows] == [True, False, False]
    shown = widgets.CheckedSteps(p.prompt, rows, title="check")
    text = repr(shown)
    assert "step 1   5+7+0=12   ok" in text and "should be 1+1+1=03" in text and "should be 32" in text
    assert shown._repr_html_().count("✓") == 1 and shown._repr_html_().count("✗") == 2
    extra = sp.compare_steps(p, "5+7+0=12,1+1+1=03,0+0+0=00;32")
    assert "one step too many" in repr(widgets.CheckedSteps(p.prompt, extra))
    with pytest.raises(ValueError, match="compare_steps"):
        widgets.CheckedSteps(p.prompt, [("5+7+0=12", True)])


def test_answer_of_reads_what_a_reader_would():
    assert sp.answer_of("5+7+0=12,1+1+1=03;32", "scratchpad") == "32"
    assert sp.answer_of("5+7+0=12,1+1+1=03;3299", "scratchpad") == "3299"  # run on past the end
    assert sp.answer_of("5+7+0=12", "scratchpad") is None
    assert sp.answer_of("32;", "direct") == "32"
    assert sp.answer_of(";", "direct") is None
