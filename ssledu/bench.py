"""``ssledu bench``: how fast this machine trains the course's models, and how well.

Two benchmarks:

1. **Throughput** (default): training tokens per second of each objective at each size
   preset, on random character data, measured through ``fit`` on the current device:
   ``mlm`` (BERT, 15 % masking), ``clm`` (GPT-2, next token), ``denoise`` (BART,
   30 % token masking, reconstruct the original). Plus the overhead of ``fit`` against a
   bare hand-written loop over the same model, data and optimizer.
2. **Time to quality** (``--target shakespeare-char``): a GPT of nanoGPT's CPU shape for
   character-level tiny Shakespeare (4 layers, 4 heads, width 128, context 64) trained by
   ``fit`` for a time budget; reports the training time until the validation loss reaches
   1.90 nats/char and the final loss. nanoGPT's CPU recipe (batch 12, 2000 steps) reaches
   1.886 in about 100-126 s on a 2-core machine.

    ssledu bench --presets nano,tiny --steps 20
    ssledu bench --target shakespeare-char --seconds 75 --repeats 2 --json

``add_arguments(parser)`` and ``run(args)`` make it the ``bench`` subcommand of the one
``ssledu`` parser; ``main(argv)`` runs it alone (``python -m ssledu.bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# torch, ssledu.models and ssledu.train are imported inside the functions that use them:
# building the ``ssledu`` parser (``ssledu --help``, ``ssledu doctor``) stays instant.

__all__ = ["OBJECTIVES", "throughput", "fit_overhead", "shakespeare_char", "find_shakespeare",
           "add_arguments", "run", "main"]

OBJECTIVES = ("mlm", "clm", "denoise")


def _specials() -> list[str]:
    # Imported here: ssledu.data.tokenize pulls in transformers, and the parser must stay light.
    from ssledu.data.tokenize import SPECIAL_TOKENS

    return list(SPECIAL_TOKENS)


# --- random character data and the three objectives -----------------------------------


def _symbol_tokenizer(vocab_size: int):
    """A fast tokenizer whose vocabulary is the 7 course special tokens + symbols."""
    from tokenizers import Tokenizer, models as tm, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = _specials()
    vocab = {tok: i for i, tok in enumerate(specials)}
    for i in range(vocab_size - len(specials)):
        vocab[f"s{i}"] = len(vocab)
    tok = Tokenizer(tm.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", bos_token="[BOS]", eos_token="[EOS]",
    )


def _mlm_collate(tokenizer):
    import torch

    try:
        from ssledu.objectives.mlm import mask_tokens

        def collate(rows):
            return mask_tokens(torch.stack(rows), tokenizer, ensure_one=True)
    except ImportError:  # the course's objective is not there: transformers' reference
        from transformers import DataCollatorForLanguageModeling

        ref = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)

        def collate(rows):
            return dict(ref([{"input_ids": r} for r in rows]))
    return collate


def _clm_collate(rows):
    import torch

    x = torch.stack(rows)  # (B, L)
    return {"input_ids": x, "labels": x}  # GPT-2 shifts the labels itself


def _denoise_collate(rows, mask_id: int | None = None, rate: float = 0.3):
    """BART token masking: 30 % of tokens become [MASK]; the decoder rebuilds the original."""
    import torch

    from ssledu.data.tokenize import MASK_ID

    x = torch.stack(rows)  # (B, L)
    noisy = x.masked_fill(torch.rand(x.shape) < rate, MASK_ID if mask_id is None else mask_id)
    return {"input_ids": noisy, "labels": x}


def _objective(name: str, preset: str, vocab_size: int, seq_len: int):
    """(model, collate_fn) for an objective at a preset."""
    from ssledu import models

    max_len = max(seq_len, models.PRESETS[preset]["max_len"])
    if name == "mlm":
        tok = _symbol_tokenizer(vocab_size)
        return models.bert(tok, preset, max_len=max_len), _mlm_collate(tok)
    if name == "clm":
        return models.gpt(vocab_size, preset, max_len=max_len), _clm_collate
    if name == "denoise":
        return models.bart(vocab_size, preset, max_len=max_len), _denoise_collate
    raise ValueError(f"unknown objective {name!r}; available: {', '.join(OBJECTIVES)}")


def _random_rows(n: int, seq_len: int, vocab_size: int, seed: int = 0):
    """(n, seq_len) random ids above the special tokens."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(len(_specials()), vocab_size, (n, seq_len), generator=g)  # (n, L)


# --- 1. throughput -------------------------------------------------------------------


def throughput(objective: str, preset: str = "nano", *, steps: int = 20, warmup: int = 3,
               batch_size: int = 32, seq_len: int = 128, vocab_size: int = 96,
               device=None, seed: int = 0) -> dict:
    """Training tokens/s of one objective at one preset, measured through ``fit``.

    Runs ``warmup + steps`` optimizer steps on random ids (batch ``batch_size`` x
    ``seq_len``); tokens/s is the median over the last ``steps`` steps of input tokens
    per second of step time (data collation, forward, backward, optimizer). Tokens are
    ``input_ids`` tokens: for BART the encoder side (its decoder reads as many again).
    """
    import torch

    from ssledu import models
    from ssledu.train import fit

    torch.manual_seed(seed)
    model, collate = _objective(objective, preset, vocab_size, seq_len)
    data = _random_rows(batch_size * 8, seq_len, vocab_size, seed)
    h = fit(model, data, collate_fn=collate, batch_size=batch_size, max_steps=warmup + steps,
            device=device, seed=seed, progress=False, live_plot=False)
    rates = [s["tokens_per_s"] for s in h.steps[warmup:]]
    tps = statistics.median(rates)
    return {
        "objective": objective,
        "model": type(model).__name__,
        "preset": preset,
        "params_M": round(models.count_parameters(model) / 1e6, 3),
        "batch": f"{batch_size}x{seq_len}",
        "tokens_per_s": round(tps),
        "ms_per_step": round(1000 * batch_size * seq_len / tps, 1),
    }


def _bare_loop(model, data, collate, *, steps, batch_size, lr, device):
    """The loop a reader would write by hand: same data, optimizer, schedule and clipping."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import get_cosine_schedule_with_warmup

    from ssledu.train import param_groups

    t0, c0 = time.perf_counter(), time.process_time()
    model.to(device).train()
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate)
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=lr, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, min(100, int(0.05 * steps)), steps)
    it, done = iter(loader), 0
    while done < steps:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # a hand-written loop prints its loss too
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def fit_overhead(preset: str = "nano", *, steps: int = 30, repeats: int = 3, batch_size: int = 32,
                 seq_len: int = 128, vocab_size: int = 96, device=None) -> dict:
    """Tokens/s of ``fit`` (progress bar on, output discarded) vs a bare loop.

    Same GPT-2 model class and preset, data, AdamW groups, schedule and clipping; wall time
    of the whole call, setup included. The two are interleaved ``repeats`` times and the
    best run of each is compared (the least disturbed by other processes). The same
    comparison in process CPU time (``overhead_cpu_pct``) is steadier on a shared machine.
    """
    import torch

    from ssledu import get_device, models
    from ssledu.train import fit

    device = get_device(device) if not isinstance(device, torch.device) else device
    data = _random_rows(batch_size * 8, seq_len, vocab_size)
    tokens = steps * batch_size * seq_len
    bare, fitted, bare_cpu, fit_cpu = [], [], [], []
    for r in range(repeats + 1):  # the first round warms up and is dropped
        torch.manual_seed(r)
        m = models.gpt(vocab_size, preset, max_len=max(seq_len, models.PRESETS[preset]["max_len"]))
        t, c = _bare_loop(m, data, _clm_collate, steps=steps, batch_size=batch_size, lr=1e-3,
                          device=device)
        torch.manual_seed(r)
        m = models.gpt(vocab_size, preset, max_len=max(seq_len, models.PRESETS[preset]["max_len"]))
        t0, c0 = time.perf_counter(), time.process_time()
        with contextlib.redirect_stderr(io.StringIO()):
            fit(m, data, collate_fn=_clm_collate, batch_size=batch_size, max_steps=steps,
                device=device, progress=True, live_plot=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        if r:
            bare.append(tokens / t)
            fitted.append(tokens / t_fit)
            bare_cpu.append(tokens / c)
            fit_cpu.append(tokens / c_fit)
    b, f = max(bare), max(fitted)
    bc, fc = max(bare_cpu), max(fit_cpu)
    return {
        "preset": preset,
        "steps": steps,
        "bare_tokens_per_s": round(b),
        "fit_tokens_per_s": round(f),
        "overhead_pct": round(100 * (b - f) / b, 1),
        "overhead_cpu_pct": round(100 * (bc - fc) / bc, 1),
        "bare_runs": [round(x) for x in bare],
        "fit_runs": [round(x) for x in fitted],
    }


# --- 2. time to quality: character-level tiny Shakespeare --------------------------------


def find_shakespeare(path=None) -> Path | None:
    """The tiny Shakespeare text: ``path``, else the ``input.txt`` of its mirror folder (found
    by ``ssledu.data.hub.find_mirror``, the one place that knows the folder names) under
    ``$SSLEDU_DATA_DIR``, ``$SSLEDU_SHARED_DATA`` or ``shared/data`` beside the repository.
    None when absent."""
    from ssledu.data.hub import find_mirror

    if path is not None:
        return Path(path) if Path(path).is_file() else None
    roots = [os.environ.get("SSLEDU_DATA_DIR"), os.environ.get("SSLEDU_SHARED_DATA"),
             str(Path(__file__).resolve().parents[2] / "shared" / "data")]
    for root in filter(None, roots):
        folder = find_mirror("tiny_shakespeare", root)
        if folder is not None and (folder / "input.txt").is_file():
            return folder / "input.txt"
    return None


class _Windows:
    """Every ``context``-long window of a token stream: item i = ids[i : i + context].

    A map-style dataset (``__len__`` + ``__getitem__``) as DataLoader reads it."""

    def __init__(self, ids, context: int):
        self.ids, self.context = ids, context

    def __len__(self):
        return len(self.ids) - self.context

    def __getitem__(self, i):
        return self.ids[i : i + self.context]


def shakespeare_char(path=None, *, max_seconds: float | None = 75.0, max_steps: int | None = None,
                     target: float = 1.90,
                     batch_size: int = 8, lr: float = 4e-3, warmup_steps: int | None = None,
                     weight_decay: float = 0.01, betas=(0.9, 0.99), eval_every: int = 100,
                     eval_blocks: int = 640, seed: int = 0, device=None, progress: bool = True) -> dict:
    """Train nanoGPT's CPU-size GPT on character-level tiny Shakespeare with ``fit``.

    Settings tuned on a 2-core CPU for the most progress per CPU-second: small batches
    (8 windows: more updates per token), a high rate (4e-3) and beta2 = 0.99 (nanoGPT's
    value for small batches), warmup min(100 steps, 5 % of the time), cosine decay to 0
    when the ``max_seconds`` budget ends.

    Data: first 90 % of the characters for training (every 64-character window, shuffled),
    last 10 % for validation; vocabulary = the text's characters. Model: ``models.gpt`` with
    4 layers, 4 heads, width 128, FFN 512, context 64, dropout 0. The validation loss is
    measured every ``eval_every`` steps on a fixed, evenly spaced set of ``eval_blocks``
    non-overlapping validation blocks (of 1742), and at the end on all of them.
    ``time_to_target_s`` is *training* time until the first evaluation at or below
    ``target`` (evaluation time excluded; ``wall_to_target_s`` includes it);
    ``cpu_to_target_s`` is the process CPU time of the same training steps, which with one
    torch thread estimates the time on an otherwise idle core (the course's machines are
    often shared). ``max_steps`` gives a step budget and schedule instead of a time budget.
    """
    import torch

    from ssledu import models
    from ssledu.train import evaluate, fit

    file = find_shakespeare(path)
    if file is None:
        raise FileNotFoundError(
            "tiny Shakespeare not found: put input.txt under $SSLEDU_DATA_DIR/tinyshakespeare/ "
            "(or pass path=)"
        )
    text = file.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    context = 64
    val_blocks = val_ids[: len(val_ids) // context * context].view(-1, context)  # (N, 64)
    pick = torch.linspace(0, len(val_blocks) - 1, min(eval_blocks, len(val_blocks))).round().long()
    val_fixed = torch.utils.data.DataLoader(val_blocks[pick], batch_size=128, collate_fn=_clm_collate)

    torch.manual_seed(seed)
    # A raw character vocabulary has no special tokens: no pad/bos/eos ids.
    model = models.gpt(len(chars), "tiny", n_layer=4, n_head=4, d_model=128, d_ff=512,
                       max_len=context, dropout=0.0, pad_token_id=None, bos_token_id=None,
                       eos_token_id=None)
    reached = {}
    cpu = {"start": time.process_time(), "step": 0.0, "eval": 0.0}

    def watch(state):
        now = time.process_time()
        if state.event == "step":
            cpu["step"] = now
            return
        cpu["eval"] += now - cpu["step"]  # the evaluation ran between the two events
        if not reached and state.last_eval["val_loss"] <= target:
            reached.update(step=state.step, elapsed_s=state.last_eval["elapsed_s"],
                           wall_s=state.last_eval["wall_s"], val_loss=state.last_eval["val_loss"],
                           cpu_s=cpu["step"] - cpu["start"] - (cpu["eval"] - (now - cpu["step"])))

    t0 = time.perf_counter()
    h = fit(model, _Windows(train_ids, context), collate_fn=_clm_collate, eval_data=val_fixed,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, betas=betas,
            warmup_steps=warmup_steps, max_seconds=max_seconds, max_steps=max_steps, eval_every=eval_every,
            device=device, seed=seed, progress=progress,
            live_plot=False, callbacks=[watch])
    wall = time.perf_counter() - t0
    cpu_total = time.process_time() - cpu["start"] - cpu["eval"]
    full_val = evaluate(model, val_blocks, collate_fn=_clm_collate, batch_size=256, device=device)
    return {
        "target": target,
        "reached": bool(reached),
        "time_to_target_s": round(reached["elapsed_s"], 1) if reached else None,
        "wall_to_target_s": round(reached["wall_s"], 1) if reached else None,
        "cpu_to_target_s": round(reached["cpu_s"], 1) if reached else None,
        "step_at_target": reached.get("step"),
        "steps": h.steps[-1]["step"],
        "train_s": round(h.elapsed_s, 1),
        "train_cpu_s": round(cpu_total, 1),
        "wall_s": round(wall, 1),
        "final_val_loss": round(h.evals[-1]["val_loss"], 4),
        "best_val_loss": round(h.best_val_loss, 4),
        "full_val_loss": round(full_val, 4),
        "final_train_loss": round(h.final_loss, 4),
        "tokens_per_s": round(statistics.median(s["tokens_per_s"] for s in h.steps)),
        "settings": {"batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps,
                     "weight_decay": weight_decay, "betas": list(betas), "max_seconds": max_seconds,
                     "max_steps": max_steps, "eval_every": eval_every,
                     "eval_blocks": len(val_fixed.dataset), "threads": torch.get_num_threads()},
        "evals": [{"step": e["step"], "val_loss": round(e["val_loss"], 4),
                   "elapsed_s": round(e["elapsed_s"], 1)} for e in h.evals],
    }


# --- the command ---------------------------------------------------------------------------


def _machine() -> dict:
    import torch

    from ssledu import get_device

    dev = get_device()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"device": str(dev), "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "load_avg_1m": round(load[0], 2), "torch": torch.__version__}


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]

    def line(cells):
        return "  ".join(str(x).rjust(w) for x, w in zip(cells, widths))

    body = [line([r[c] for c in columns]) for r in rows]
    return "\n".join([line(columns), line("-" * w for w in widths)] + body)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more; got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0; got {text!r}")
    return value


def _names(kind: str, known: Callable[[], Iterable[str]]) -> Callable[[str], list[str]]:
    """A comma-separated list of known names (``known`` is called when the flag is read)."""

    def parse(text: str) -> list[str]:
        names, available = [x.strip() for x in text.split(",") if x.strip()], list(known())
        if not names:
            raise argparse.ArgumentTypeError(f"give at least one {kind}: {', '.join(available)}")
        for x in names:
            if x not in available:
                raise argparse.ArgumentTypeError(f"unknown {kind} {x!r}; available: {', '.join(available)}")
        return names

    return parse


def _preset_names():
    from ssledu import models

    return models.PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench`` arguments, each checked by argparse (a bad value exits with status 2)."""
    p.add_argument("--presets", type=_names("preset", _preset_names), default="nano,tiny",
                   help="comma-separated: nano,tiny,small")
    p.add_argument("--objectives", type=_names("objective", lambda: OBJECTIVES), default=",".join(OBJECTIVES),
                   help="comma-separated: mlm,clm,denoise")
    p.add_argument("--steps", type=_positive_int, default=20, help="timed steps per measurement")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="batch size (throughput: 32, target: 8)")
    p.add_argument("--seq-len", type=_positive_int, default=128, help="sequence length for throughput")
    p.add_argument("--no-overhead", action="store_true", help="skip the fit-vs-bare-loop comparison")
    p.add_argument("--target", choices=["shakespeare-char"], help="run the time-to-quality benchmark")
    p.add_argument("--seconds", type=_positive_float, default=75.0, help="time budget of --target (training s)")
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate of --target (4e-3)")
    p.add_argument("--repeats", type=_positive_int, default=1, help="runs of --target")
    p.add_argument("--data", default=None, help="path of tiny Shakespeare's input.txt")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print JSON only (progress and notes go to stderr)")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark ``args`` asks for; returns the exit status."""
    if args.target and find_shakespeare(args.data) is None:
        where = (f"--data {args.data}: no such file" if args.data else
                 "tiny Shakespeare input.txt not found")
        print(f"skipped: {where}; set SSLEDU_DATA_DIR to a folder with tinyshakespeare/input.txt "
              "or pass --data PATH", file=sys.stderr)
        return 2
    if not args.json:
        return _run(args)
    # JSON only on stdout: whatever the benchmark prints on the way goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        code, out = _run(args)
    print(json.dumps(out, indent=2))
    return code


def _run(args):
    """The exit status; with ``--json``, (status, the results) for the caller to print."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"machine": _machine()}

    if args.target:
        runs = []
        for r in range(args.repeats):
            tuned = {k: v for k, v in [("lr", args.lr), ("batch_size", args.batch_size)] if v}
            res = shakespeare_char(args.data, max_seconds=args.seconds, seed=r,
                                   progress=not args.json, **tuned)
            res["load_avg_1m_after"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
            runs.append(res)
            if not args.json:
                hit = (f"val <= {res['target']} after {res['time_to_target_s']} s of training "
                       f"({res['wall_to_target_s']} s with evaluation, {res['cpu_to_target_s']} s "
                       f"CPU), step {res['step_at_target']}"
                       if res["reached"] else f"val {res['target']} NOT reached")
                print(f"run {r + 1}: {hit}; final val {res['final_val_loss']} (all val blocks "
                      f"{res['full_val_loss']}), {res['steps']} steps in {res['train_s']} s, "
                      f"{res['tokens_per_s']:,} tok/s, {res['train_cpu_s']} s CPU, "
                      f"load {res['load_avg_1m_after']}")
        out["shakespeare_char"] = runs
        code = 0 if all(r["reached"] for r in runs) else 1
        return (code, out) if args.json else code

    bs = args.batch_size or 32
    rows = [throughput(o, pr, steps=args.steps, batch_size=bs, seq_len=args.seq_len)
            for pr in args.presets for o in args.objectives]
    out["throughput"] = rows
    if not args.no_overhead:
        out["fit_overhead"] = fit_overhead(args.presets[0], steps=max(30, args.steps), batch_size=bs,
                                           seq_len=args.seq_len)
    if args.json:
        return 0, out
    m = out["machine"]
    print(f"device {m['device']} | torch {m['torch']} | {m['torch_threads']} threads | "
          f"load {m['load_avg_1m']} on {m['cpus']} CPUs")
    print(_table(rows, ["objective", "model", "preset", "params_M", "batch", "tokens_per_s", "ms_per_step"]))
    if "fit_overhead" in out:
        o = out["fit_overhead"]
        print(f"fit vs bare loop ({o['preset']} gpt, {o['steps']} steps, best of "
              f"{len(o['bare_runs'])}): {o['fit_tokens_per_s']:,} vs {o['bare_tokens_per_s']:,} "
              f"tok/s -> overhead {o['overhead_pct']} % (in CPU time: {o['overhead_cpu_pct']} %)")
    return 0


def main(argv=None) -> int:
    """``python -m ssledu.bench`` entry point (``ssledu bench`` is the same); returns the exit status."""
    p = argparse.ArgumentParser(prog="ssledu bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
