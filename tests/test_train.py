"""fit(): learning, schedule, safety (NaN, Ctrl-C), checkpoints and exact resume."""

import math
from pathlib import Path

import pytest
import torch

from cycle_task import QUIET, V, clm, cycle_blocks, losses, nano
from ssledu import models, train

pytestmark = pytest.mark.usefixtures("one_thread")


def noisy_clm(examples):
    """Uses the global RNG (like random masking) so resume must restore RNG states."""
    x = torch.stack(examples).clone()
    flip = torch.rand(x.shape) < 0.1
    x[flip] = torch.randint(0, V, (int(flip.sum()),))
    return {"input_ids": x, "labels": x}




def test_fit_starts_at_ln_vocab_and_learns_the_cycle():
    h = train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, lr=3e-3, max_steps=40,
                  warmup_steps=0, **QUIET)
    first = h.steps[0]["loss"]
    assert abs(first - math.log(V)) < 0.15  # uniform guess at init
    assert h.final_loss < 0.3  # the next token is determined by the current one
    assert h.stopped == "max_steps" and len(h.steps) == 40
    df = h.to_frame()
    assert list(df.columns[:5]) == ["step", "loss", "lr", "tokens_per_s", "elapsed_s"]
    assert (df.elapsed_s.diff().dropna() > 0).all() and (df.tokens_per_s > 0).all()


def test_lr_follows_warmup_then_cosine():
    lr, warm, total = 1e-2, 4, 20
    h = train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, lr=lr, max_steps=total,
                  warmup_steps=warm, **QUIET)
    got = [s["lr"] for s in h.steps]
    # step k uses the rate after k-1 scheduler steps (transformers' schedule: step 1 -> 0)
    assert got[0] == 0.0 and got[1] == pytest.approx(lr / 4) and got[4] == pytest.approx(lr)
    assert got[12] == pytest.approx(lr / 2)  # half way through the cosine
    for k, value in enumerate(got):
        ref = lr * (k / warm if k < warm else 0.5 * (1 + math.cos(math.pi * (k - warm) / (total - warm))))
        assert value == pytest.approx(ref, abs=1e-12)
        assert value == pytest.approx(train.cosine_lr(k, lr=lr, warmup_steps=warm, total_steps=total))
    # default warmup: min(100, 5 % of the steps) = 2 here
    h = train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, lr=lr, max_steps=40, **QUIET)
    assert [s["lr"] for s in h.steps[:3]] == pytest.approx([0.0, lr / 2, lr])


def test_clock_schedule_reaches_zero_when_time_is_up():
    f = train._ClockCosine(budget_s=100.0, warmup_steps=None)
    f.elapsed_s = 1.0
    assert f(0) == 0.2 and f(50) == 0.5  # warmup: 100 steps or 5 s, whichever first
    f.elapsed_s = 5.0
    assert f(60) == 1.0  # 5 % of the budget: warm
    f.elapsed_s = 52.5
    assert f(500) == pytest.approx(0.5)  # half of the remaining 95 s
    f.elapsed_s = 100.0
    assert f(900) == pytest.approx(0.0, abs=1e-12)
    g = train._ClockCosine(budget_s=10.0, warmup_steps=4)
    g.elapsed_s = 3.0
    assert g(2) == 0.5 and g(4) == 1.0 and g.warm_end_s == 3.0


def test_max_seconds_and_epochs_budgets():
    h = train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, max_seconds=0.3, **QUIET)
    assert h.stopped == "max_seconds" and h.elapsed_s >= 0.3
    h = train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, epochs=2, **QUIET)
    assert h.stopped == "epochs" and len(h.steps) == 6  # 24 rows / 8 = 3 steps per epoch
    with pytest.raises(ValueError, match="max_steps"):
        train.fit(nano(), cycle_blocks(), collate_fn=clm, **QUIET)


def test_each_epoch_is_a_fresh_seeded_shuffle():
    def order(seed, epochs=2):
        seen = []

        def recording(examples):
            seen.extend(int(x[0]) for x in examples)  # rows are told apart by their first id
            return clm(examples)

        data = torch.arange(24)[:, None] + torch.zeros(1, 4, dtype=torch.long)  # row i = [i]*4
        train.fit(models.gpt(24, "nano"), data, collate_fn=recording, batch_size=8,
                  epochs=epochs, seed=seed, **QUIET)
        return [seen[i : i + 24] for i in range(0, len(seen), 24)]

    first, second = order(seed=0)
    assert sorted(first) == sorted(second) == list(range(24))  # every example once per epoch
    assert first != second and first != list(range(24))  # reshuffled, not in file order
    assert order(seed=0) == [first, second]  # the seed decides the order
    assert order(seed=1)[0] != first


def test_weight_decay_skips_biases_norms_and_optionally_embeddings():
    model = models.bert(50, "nano")
    decay, rest = train.param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in rest["params"]}
    assert all(n.endswith("bias") or "LayerNorm" in n for n in exempt)
    assert not any(n.endswith("bias") or "LayerNorm" in n for n in decayed)
    assert "bert.encoder.layer.0.attention.self.query.weight" in decayed
    assert "bert.embeddings.word_embeddings.weight" in decayed
    n_all = sum(p.numel() for g in (decay, rest) for p in g["params"])
    assert n_all == models.count_parameters(model)  # tied weights once, nothing lost
    decay2, rest2 = train.param_groups(model, 0.1, decay_embeddings=False)
    exempt2 = {names[id(p)] for p in rest2["params"]}
    assert {"bert.embeddings.word_embeddings.weight",
            "bert.embeddings.position_embeddings.weight"} <= exempt2


def test_grad_accum_matches_one_big_batch():
    a, b = nano(), nano()
    ha = train.fit(a, cycle_blocks(), collate_fn=clm, batch_size=8, max_steps=3, warmup_steps=0,
                   **QUIET)
    hb = train.fit(b, cycle_blocks(), collate_fn=clm, batch_size=4, grad_accum=2, max_steps=3,
                   warmup_steps=0, **QUIET)
    for sa, sb in zip(ha.steps, hb.steps):  # same examples, same mean loss and gradient
        assert sb["loss"] == pytest.approx(sa["loss"], rel=1e-5)
        assert sb["grad_norm"] == pytest.approx(sa["grad_norm"], rel=1e-4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=2e-5, rtol=1e-4)


def test_fit_equals_a_hand_written_loop():
    """Same batches, AdamW groups, schedule and clipping: fit's losses are the loop's, bit for bit."""
    from transformers import get_cosine_schedule_with_warmup

    data, steps, lr = cycle_blocks(), 7, 3e-3
    h = train.fit(nano(), data, collate_fn=clm, batch_size=8, lr=lr, max_steps=steps,
                  warmup_steps=2, clip_norm=0.5, shuffle=False, **QUIET)
    model = nano()
    model.train()
    opt = torch.optim.AdamW(train.param_groups(model, 0.01), lr=lr, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, 2, steps)
    ref = []
    for k in range(steps):
        rows = (k % 3) * 8
        loss = model(**clm(list(data[rows : rows + 8]))).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        sched.step()
        opt.zero_grad()
        ref.append(loss.item())
    assert losses(h) == ref


def test_nan_loss_stops_naming_the_step():
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = model(**batch).loss
        return loss * float("nan") if calls["n"] == 3 else loss

    model = nano()
    with pytest.raises(FloatingPointError) as err:
        train.fit(model, cycle_blocks(), collate_fn=clm, batch_size=8, max_steps=10,
                  loss_fn=loss_fn, **QUIET)
    msg = str(err.value)
    assert "at step 3" in msg and "at step 2" in msg and "learning rate" in msg
    assert len(err.value.history.steps) == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step never applied


def test_interrupt_returns_the_history_so_far():
    def stop_at_4(state):
        if state.step == 4:
            raise KeyboardInterrupt

    model = nano()
    h = train.fit(model, cycle_blocks(), collate_fn=clm, batch_size=8, max_steps=10,
                  callbacks=[stop_at_4], **QUIET)
    assert h.stopped == "interrupted" and [s["step"] for s in h.steps] == [1, 2, 3, 4]
    assert model(**clm(list(cycle_blocks()[:2]))).loss.isfinite()  # the model still works


def test_callback_can_stop_and_eval_runs_on_schedule():
    seen = []

    def stop_when_low(state):
        seen.append(state.event)
        if state.event == "eval" and state.last_eval["val_loss"] < 1.0:
            state.stop = True

    h = train.fit(nano(), cycle_blocks(), collate_fn=clm, eval_data=cycle_blocks(8), batch_size=8,
                  lr=3e-3, max_steps=60, eval_every=5, warmup_steps=0, callbacks=[stop_when_low],
                  **QUIET)
    assert h.stopped == "callback" and h.best_val_loss < 1.0
    assert [e["step"] for e in h.evals] == list(range(5, h.steps[-1]["step"] + 1, 5))
    assert "eval" in seen and seen.count("step") == len(h.steps)
    assert h.evals[-1]["wall_s"] >= h.evals[-1]["elapsed_s"] > 0


def test_evaluation_is_repeatable_and_leaves_training_randomness_alone():
    data = cycle_blocks()
    model = nano(dropout=0.1)
    v1 = train.evaluate(model, data, collate_fn=noisy_clm, batch_size=8)
    v2 = train.evaluate(model, data, collate_fn=noisy_clm, batch_size=8)
    assert v1 == v2  # same random corruption each time, no dropout
    kw = dict(collate_fn=noisy_clm, batch_size=8, max_steps=6, **QUIET)
    plain = train.fit(nano(dropout=0.1), data, **kw)
    with_eval = train.fit(nano(dropout=0.1), data, eval_data=data, eval_every=2, **kw)
    assert losses(plain) == losses(with_eval)


@pytest.mark.parametrize("own_loader", [True, False], ids=["fit-loader", "user-DataLoader"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, own_loader):
    data = cycle_blocks(20)  # 3 batches of 8 per epoch (last one short): epochs roll over

    def source():
        if own_loader:
            return data
        return torch.utils.data.DataLoader(list(data), batch_size=8, shuffle=True, collate_fn=noisy_clm)

    kw = dict(collate_fn=noisy_clm, batch_size=8, max_steps=10, seed=3, **QUIET)
    full = train.fit(nano(dropout=0.1), source(), **kw)

    def interrupt(state):
        if state.step == 5:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run"
    part = train.fit(nano(dropout=0.1), source(), checkpoint_dir=ckpt, callbacks=[interrupt], **kw)
    assert part.stopped == "interrupted" and len(part.steps) == 5
    fresh = models.gpt(V, "nano", dropout=0.1)  # different init: weights come from the checkpoint
    resumed = train.fit(fresh, source(), resume_from=ckpt, **kw)
    assert resumed.stopped == "max_steps"
    assert [s["step"] for s in resumed.steps] == list(range(1, 11))
    assert losses(resumed) == losses(full)  # bit for bit on the CPU
    assert losses(full)[5] != losses(full)[4]


def test_checkpoint_round_trip_is_atomic(tmp_path, monkeypatch):
    from transformers import GPT2LMHeadModel

    ckpt = tmp_path / "ckpt"
    model = nano()
    h = train.fit(model, cycle_blocks(), collate_fn=clm, batch_size=8, max_steps=4,
                  checkpoint_dir=ckpt, checkpoint_every=2, **QUIET)
    assert Path(h.checkpoint) == ckpt
    assert (ckpt / "model.safetensors").exists() and (ckpt / "trainer_state.pt").exists()
    loaded = GPT2LMHeadModel.from_pretrained(ckpt)
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4 and len(state["history"]["steps"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folders left

    # a crash while writing the next checkpoint leaves the previous one whole
    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(train.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, max_steps=2,
                  checkpoint_dir=ckpt, **QUIET)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert torch.load(ckpt / "trainer_state.pt", weights_only=True)["step"] == 4


def test_live_plot_only_in_a_notebook(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def __init__(self):
            self.updates = 0

        def update(self, obj):
            self.updates += 1

    def fake_display(obj, display_id=False):
        shown.append((obj, display_id))
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    assert not train._in_notebook()  # pytest is a terminal
    train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, max_steps=3, progress=False)
    assert shown == []
    monkeypatch.setattr(train, "_in_notebook", lambda: True)
    train.fit(nano(), cycle_blocks(), collate_fn=clm, batch_size=8, max_steps=3, progress=False)
    assert len(shown) == 1 and shown[0][1] is True  # one figure, updated in place


def test_a_batch_without_labels_says_what_to_do():
    with pytest.raises(ValueError, match="collate_fn that adds labels"):
        train.fit(nano(), cycle_blocks(), batch_size=8, max_steps=2, **QUIET)
    assert train._count_tokens({"input_ids": torch.ones(2, 5), "attention_mask":
                                torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}) == 8
    assert train._count_tokens({"input_ids": torch.ones(2, 5)}) == 10


def test_bench_throughput_table_runs_offline(capsys):
    import json

    from ssledu import bench

    code = bench.main(["--presets", "nano", "--objectives", "mlm,clm,denoise", "--steps", "2",
                       "--batch-size", "4", "--seq-len", "16", "--no-overhead", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {r["objective"]: r for r in out["throughput"]}
    assert rows["mlm"]["model"] == "BertForMaskedLM" and rows["denoise"]["model"].startswith("Bart")
    assert all(r["tokens_per_s"] > 0 and r["batch"] == "4x16" for r in rows.values())


def test_bench_target_skips_cleanly_without_the_data(tmp_path, monkeypatch, capsys):
    from ssledu import bench

    monkeypatch.setenv("SSLEDU_DATA_DIR", str(tmp_path))
    assert bench.main(["--target", "shakespeare-char", "--data", str(tmp_path / "none.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    windows = bench._Windows(torch.arange(10), 4)
    assert len(windows) == 6 and windows[5].tolist() == [5, 6, 7, 8]


# --- one loader, resumable stream, pieces for a hand-written loop -------------------------


def test_fit_trains_on_the_dict_that_pad_blocks_returns():
    from ssledu.data.blocks import pad_blocks

    docs = [list(cycle_blocks(1, n)[0]) for n in (5, 9, 12, 7)] * 4
    blocks = pad_blocks(docs, 8)  # {"input_ids": (N, 8), "attention_mask": (N, 8)}

    def masked_clm(examples):
        batch = torch.utils.data.default_collate(examples)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return {**batch, "labels": labels}

    h = train.fit(nano(), blocks, collate_fn=masked_clm, batch_size=4, max_steps=3, **QUIET)
    assert len(h.steps) == 3
    n_real = int(blocks["attention_mask"].sum())
    assert 0 < h.steps[0]["tokens_per_s"] and n_real < blocks["input_ids"].numel()
    # without a collate_fn the dict batches go to the model as they are
    h = train.fit(nano(), {**blocks, "labels": blocks["input_ids"]}, batch_size=4, max_steps=2, **QUIET)
    assert len(h.steps) == 2


def test_batch_stream_resumes_mid_epoch_exactly():
    from ssledu.data.blocks import BatchStream, make_loader

    data = torch.arange(20)[:, None]
    full = BatchStream(make_loader(data, 3, seed=5))
    ref = [full.next()[:, 0].tolist() for _ in range(12)]  # 7 batches per epoch: crosses into epoch 2
    part = BatchStream(make_loader(data, 3, seed=5))
    for _ in range(9):
        part.next()
    state = part.state_dict()
    again = BatchStream(make_loader(data, 3, seed=5))
    again.load_state_dict(state)
    assert [again.next()[:, 0].tolist() for _ in range(3)] == ref[9:]
    assert sorted(sum(ref[:7], [])) == list(range(20)) and ref[:7] != ref[7:14][:7]
    assert BatchStream(make_loader(data, 10), max_epochs=2).__iter__().__next__().shape == (10, 1)
    assert len(list(BatchStream(make_loader(data, 10), max_epochs=2))) == 4


def test_a_hand_written_loop_uses_the_same_pieces(tmp_path):
    """A MoCo-style loop (a momentum copy of the model) built from fit's public pieces."""
    from ssledu import checkpoint, live
    from ssledu.data.blocks import BatchStream, make_loader

    def run(steps, resume=None, stop_at=None):
        torch.manual_seed(0)
        model, momentum = nano(), nano()
        opt = torch.optim.AdamW(train.param_groups(model, 0.01), lr=3e-3, betas=(0.9, 0.95))
        stream = BatchStream(make_loader(cycle_blocks(), 8, seed=1, collate_fn=clm))
        history, start = train.History(), 0
        if resume is not None:
            state = checkpoint.load_checkpoint(checkpoint.find_checkpoint(resume), model)
            momentum.load_state_dict(state["momentum"])
            opt.load_state_dict(state["optimizer"])
            stream.load_state_dict(state["position"])
            train.set_rng_state(state["rng"])
            history.steps, start = state["history"], state["step"]
        progress = live.Progress(steps, initial=start, notebook=False, file=open(tmp_path / "bar", "w"))
        plot = live.LivePlot(steps, reference=math.log(V), notebook=False)
        for step in range(start + 1, steps + 1):
            for group in opt.param_groups:
                group["lr"] = train.cosine_lr(step - 1, lr=3e-3, warmup_steps=2, total_steps=steps)
            loss = model(**stream.next()).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            with torch.no_grad():  # the momentum encoder follows the trained one (MoCo, m = 0.9)
                for p, q in zip(model.parameters(), momentum.parameters()):
                    q.mul_(0.9).add_(p, alpha=0.1)
            history.steps.append({"step": step, "loss": loss.item()})
            progress.update(step, loss=loss.item())
            plot.update(history)
            if step == stop_at:
                checkpoint.save_checkpoint(tmp_path / "moco", model, {
                    "step": step, "momentum": momentum.state_dict(), "optimizer": opt.state_dict(),
                    "position": stream.state_dict(), "rng": train.rng_state(), "history": history.steps})
                break
        assert progress.close("max_steps").startswith(f"done (max_steps): step {step}/{steps}")
        return history, momentum

    full, momentum = run(12)
    assert full.steps[-1]["loss"] < full.steps[0]["loss"] - 1.0
    run(12, stop_at=5)
    resumed, momentum2 = run(12, resume=tmp_path / "moco")
    assert losses(resumed) == losses(full)
    for p, q in zip(momentum.parameters(), momentum2.parameters()):
        assert torch.equal(p, q)


# --- randomness of collators: evaluation never changes training ---------------------------


TEXTS = ["the cat sat on the mat .", "a dog ran to the red ball .", "the red cat saw a dog ."]


@pytest.fixture(scope="module")
def word_tok():
    from ssledu.data.tokenize import train_tokenizer

    return train_tokenizer(TEXTS, "word")


def word_data(tok, n=24):
    ids = [[tok.cls_token_id] + tok(t, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
           for t in TEXTS]
    return [ids[i % len(ids)] for i in range(n)]


def mlm_setup(tok, kind):
    from ssledu.objectives import mlm, prefix

    torch.manual_seed(0)
    model = models.bert(tok, "nano", dropout=0.0)
    if kind == "mlm":
        return model, mlm.mlm_collator(tok, 0.3, seed=0)
    return model, prefix.UniLMMixture(("bidirectional", "causal", "prefix"), seed=0, tokenizer=tok,
                                      mlm_probability=0.3)


@pytest.mark.parametrize("kind", ["mlm", "unilm"])
def test_evaluation_does_not_change_the_training_losses(word_tok, kind):
    data = word_data(word_tok)
    kw = dict(batch_size=8, max_steps=7, lr=3e-3, seed=0, **QUIET)
    model, collate = mlm_setup(word_tok, kind)
    plain = train.fit(model, data, collate_fn=collate, **kw)
    model, collate = mlm_setup(word_tok, kind)
    with_eval = train.fit(model, data, collate_fn=collate, eval_data=data[:8], eval_every=3, **kw)
    assert losses(with_eval) == losses(plain)
    assert len(with_eval.evals) == 3  # steps 3, 6 and the end


@pytest.mark.parametrize("kind", ["mlm", "unilm"])
def test_evaluate_scores_the_same_masks_every_time(word_tok, kind):
    model, collate = mlm_setup(word_tok, kind)
    data = word_data(word_tok)
    state = copy_state(collate)
    vals = [train.evaluate(model, data, collate_fn=collate, batch_size=4) for _ in range(3)]
    assert vals[0] == vals[1] == vals[2]
    assert train.evaluate(model, data, collate_fn=collate, batch_size=4, seed=1) != vals[0]
    assert all(torch.equal(a, b) for a, b in zip(state, copy_state(collate)))  # untouched


def copy_state(collate):
    return [v.clone() for v in collate.state_dict().values() if isinstance(v, torch.Tensor)]


def test_unilm_resume_is_bit_exact_and_each_step_records_its_mask_kind(tmp_path, word_tok):
    data = word_data(word_tok)
    kw = dict(batch_size=8, max_steps=9, lr=3e-3, seed=2, **QUIET)
    model, mix = mlm_setup(word_tok, "unilm")
    full = train.fit(model, data, collate_fn=mix, **kw)
    kinds = [s["mask_kind"] for s in full.steps]
    assert kinds == mix.drawn and len(set(kinds)) >= 2  # the kind travels with the batch
    assert full.to_frame()["mask_kind"].tolist() == kinds

    def interrupt(state):
        if state.step == 4:
            raise KeyboardInterrupt

    model, mix = mlm_setup(word_tok, "unilm")
    train.fit(model, data, collate_fn=mix, checkpoint_dir=tmp_path / "u", callbacks=[interrupt], **kw)
    model, mix = mlm_setup(word_tok, "unilm")
    resumed = train.fit(model, data, collate_fn=mix, resume_from=tmp_path / "u", **kw)
    assert losses(resumed) == losses(full)
    assert [s["mask_kind"] for s in resumed.steps] == kinds and mix.drawn == kinds


def test_resume_from_an_eval_step_checkpoint_continues_the_run(tmp_path, word_tok):
    import shutil

    data = word_data(word_tok)
    ckpt = tmp_path / "run"

    def keep_step_3(state):  # at step 4, the folder holds the checkpoint written after step 3
        if state.step == 4 and state.event == "step":
            shutil.copytree(ckpt, tmp_path / "at3")

    kw = dict(batch_size=8, max_steps=7, lr=3e-3, seed=0, eval_data=data[:8], eval_every=3, **QUIET)
    model, collate = mlm_setup(word_tok, "mlm")
    full = train.fit(model, data, collate_fn=collate, checkpoint_dir=ckpt, checkpoint_every=3,
                     callbacks=[keep_step_3], **kw)
    assert torch.load(tmp_path / "at3" / "trainer_state.pt", weights_only=True)["step"] == 3
    model, collate = mlm_setup(word_tok, "mlm")
    resumed = train.fit(model, data, collate_fn=collate, resume_from=tmp_path / "at3",
                        checkpoint_dir=tmp_path / "again", **kw)
    assert losses(resumed) == losses(full)
    assert [e["val_loss"] for e in resumed.evals] == [e["val_loss"] for e in full.evals]


# --- fit's own bad inputs: clear errors before any training ---------------------------------


@pytest.mark.parametrize("bad, error, words", [
    (dict(lr="1e-3"), TypeError, "lr must be a number such as 1e-3; got '1e-3' (str): write it without quotes"),
    (dict(max_steps=0), ValueError, "max_steps must be a positive integer or None; got 0"),
    (dict(max_steps=-5), ValueError, "max_steps must be a positive integer or None; got -5"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer; got 0"),
    (dict(eval_every=0, eval_data=cycle_blocks(8)), ValueError, "eval_every must be a positive integer"),
    (dict(eval_every=2), ValueError, "eval_every needs eval_data="),
    (dict(precision="fp16"), ValueError, "precision must be one of auto, bf16, fp32; got 'fp16'"),
    (dict(max_seconds=-1), ValueError, "max_seconds must be positive"),
    (dict(warmup_steps=-1), ValueError, "warmup_steps must be a positive integer"),
])
def test_bad_arguments_are_refused_before_training(bad, error, words):
    steps = []
    kw = dict(collate_fn=clm, batch_size=8, max_steps=3, callbacks=[lambda s: steps.append(s)], **QUIET)
    with pytest.raises(error) as err:
        train.fit(nano(), cycle_blocks(), **{**kw, **bad})
    assert words in str(err.value) and steps == []


def test_data_that_does_not_fit_the_model_is_refused_in_words():
    model = nano()
    before = [p.clone() for p in model.parameters()]
    too_big = cycle_blocks() + 40  # ids up to 55, the model knows 16
    with pytest.raises(ValueError, match=r"token id 55 but the model's vocabulary has 16 ids \(0..15\)"):
        train.fit(model, too_big, collate_fn=clm, batch_size=8, max_steps=3, **QUIET)
    long_rows = cycle_blocks(8, 200)  # nano has 128 positions
    with pytest.raises(ValueError, match=r"sequences of 200 tokens but the model reads at most 128 "
                                         r"positions.*block_size=128"):
        train.fit(model, long_rows, collate_fn=clm, batch_size=8, max_steps=3, **QUIET)
    with pytest.raises(ValueError, match="vocabulary has 16 ids"):
        train.evaluate(model, too_big, collate_fn=clm, batch_size=8)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


# --- the GPU path's deferred checks, run on the CPU ----------------------------------------


def test_a_nan_found_at_a_later_logging_point_still_names_its_step():
    """On a GPU the losses are read in groups; the first bad one is named, not the last."""
    history = train.History()
    log = train._StepLog(history, log_every=1, stop_at=None, lr=1e-3, deferred=True)
    for step, value in enumerate([2.0, 1.5, float("nan"), float("nan"), 1.0], start=1):
        log.add(step, torch.tensor(value), torch.tensor(0.5), 1e-3, 100, 0.01, {}, {}, step * 0.01)
    with pytest.raises(FloatingPointError) as err:
        log.flush()
    msg = str(err.value)
    assert "loss is nan at step 3" in msg and "1.5000 at step 2" in msg and "reload the last checkpoint" in msg
    assert [s["step"] for s in history.steps] == [1, 2]
    log = train._StepLog(train.History(), 1, None, 1e-3, deferred=True)
    log.add(1, torch.tensor(1.0), torch.tensor(float("inf")), 1e-3, 1, 0.01, {}, {}, 0.01)
    with pytest.raises(FloatingPointError, match="gradient norm is inf at step 1"):
        log.flush()


def test_log_windows_average_and_tag_the_steps():
    history = train.History()
    log = train._StepLog(history, log_every=2, stop_at=5, lr=1e-3, deferred=False)
    for step in range(1, 6):
        kind = {"mask_kind": "causal" if step < 4 else "prefix"}
        log.add(step, torch.tensor(float(step)), torch.tensor(1.0), 1e-3, 10, 0.5, {}, kind, step * 0.5)
    log.flush(final=True)
    assert [(s["step"], s["loss"], s["mask_kind"]) for s in history.steps] == [
        (2, 1.5, "causal"), (4, 3.5, "mixed"), (5, 5.0, "prefix")]
    assert history.steps[0]["tokens_per_s"] == pytest.approx(20.0)
