"""``ssledu pretrain``: pretrain a model from scratch on a corpus, from the command line.

    ssledu pretrain clm --corpus tiny_shakespeare --preset nano --seconds 60 --out runs/clm
    ssledu pretrain mlm --corpus ~/my_texts --preset tiny --steps 2000 --out runs/mlm
    ssledu pretrain mlm --corpus ~/my_texts --preset tiny --steps 4000 --out runs/mlm --resume
    torchrun --standalone --nproc_per_node 2 -m ssledu pretrain clm --corpus toyworld ...

The pipeline (``pretrain(...)``, the same for all objectives):

1. texts: a corpus by name (``ssledu.data.load_corpus``: toyworld, pydocs, tiny_shakespeare,
   ...) or a folder of your own ``.txt`` files (each file one document, sub-folders too);
2. a tokenizer trained on the training texts (``train_tokenizer``: WordPiece for the
   BERT objectives, byte-level BPE for GPT and BART), saved in ``OUT/tokenizer``;
3. blocks: documents joined with [EOS] and cut into rows of the model's context
   (``pack_blocks``); validation is the corpus's validation split, else 10 % of the rows;
4. the model from its config (``ssledu.models`` preset, dropout 0 for a short run) and the
   objective's collator:

   ==========  ========================  =============================================
   objective   model                     collator (``ssledu.objectives``)
   ==========  ========================  =============================================
   mlm         BertForMaskedLM           ``MLMCollator`` (15 %, 80/10/10), [CLS] .. [SEP]
   clm         GPT2LMHeadModel           ``clm_collator`` (next token)
   prefix      BertForMaskedLM           ``UniLMMixture(("prefix",))`` (prefix-LM masks)
   denoise     BartForConditionalGen.    ``BARTCollator`` (text infilling, 30 %)
   ==========  ========================  =============================================

5. ``fit`` with warmup + cosine decay, gradient clipping, an evaluation every
   ``eval_every`` steps (loss, perplexity = exp(loss), token accuracy: masked accuracy for
   mlm), a checkpoint in ``OUT/checkpoint`` every ``checkpoint_every`` steps and at the
   end (``--resume`` continues it), a progress bar and a final summary line.

The loss is the mean cross-entropy per label token of the whole global batch
(``TokenLoss``): under torchrun, the label tokens of all processes are counted, not a
mean of per-process means. ``--config FILE`` (JSON or TOML) sets the training settings of
``DEFAULTS`` and ``model`` / ``tokenizer`` tables, e.g. ``{"lr": 3e-4, "model": {"n_layer": 3},
"tokenizer": {"kind": "char"}}``. Every file the run writes is in ``OUT``: ``pretrain.json``
(what the run is, checked by ``--resume``), ``tokenizer/``, ``checkpoint/``
(``from_pretrained`` loads it), ``summary.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

# torch, transformers and the data modules are imported inside the functions: building the
# ``ssledu`` parser stays instant.

__all__ = ["OBJECTIVES", "DEFAULTS", "TokenLoss", "load_texts", "pretrain", "format_summary",
           "add_arguments", "run"]

OBJECTIVES = ("mlm", "clm", "prefix", "denoise")
PRESETS = ("nano", "tiny", "small")

# objective -> model builder, tokenizer kind, whether the model shifts labels itself
_SPEC = {
    "mlm": {"builder": "bert", "tokenizer": "wordpiece", "shift": False, "accuracy": "masked_accuracy"},
    "clm": {"builder": "gpt", "tokenizer": "bpe", "shift": True, "accuracy": "token_accuracy"},
    "prefix": {"builder": "bert", "tokenizer": "wordpiece", "shift": False, "accuracy": "token_accuracy"},
    "denoise": {"builder": "bart", "tokenizer": "bpe", "shift": False, "accuracy": "token_accuracy"},
}

#: Training settings a --config file may set (and their defaults).
DEFAULTS = {
    "batch_size": 32,          # per process; K processes train on K x batch_size rows a step
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup_steps": None,      # fit's default: min(100 steps, 5 % of the budget)
    "clip_norm": 1.0,
    "eval_every": 100,
    "eval_batches": 20,
    "checkpoint_every": 500,
    "val_fraction": 0.1,
    "seed": 0,
    "precision": "auto",       # bf16 where the hardware runs it natively (fit's "auto")
    "timeout_s": 300.0,        # how long a process waits for the others (torchrun)
}
_CONFIG_TABLES = ("model", "tokenizer")
_RUN_FILE = "pretrain.json"
_FORMAT = 1


# --- the loss: mean per label token over every process ----------------------------------


class TokenLoss:
    """``loss_fn`` for ``fit``: cross-entropy per label token, normalised by the global count.

    ``(model, batch) -> (loss, {accuracy_name: accuracy})``. batch: the collator's dict
    with ``labels`` (B, L), -100 where nothing is predicted; the model gets the other keys
    and returns logits (B, L, V). ``shift=True`` for a model that predicts token t + 1 at
    position t from unshifted labels (GPT-2). While training under K processes the sum of
    the token losses is divided by the number of label tokens of ALL processes (and
    multiplied by K, since DDP averages the K gradients): the gradient of the global
    batch's mean per token, as one process would compute it. (A mean of per-process means
    weighs a token of a process with few labels more, e.g. a masked LM batch with fewer
    masks.) In evaluation (no gradient) it is the local mean.
    """

    def __init__(self, *, shift: bool, accuracy_name: str = "token_accuracy"):
        self.shift, self.accuracy_name = shift, accuracy_name

    def sums(self, model, batch):
        """(sum of token losses, number of label tokens, number predicted right): 0-d tensors."""
        import torch.nn.functional as F

        from ssledu.conventions import IGNORE_INDEX

        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (B, L, V)
        if self.shift:
            logits, labels = logits[:, :-1], labels[:, 1:]  # position t predicts token t + 1
        keep = labels != IGNORE_INDEX
        total = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="sum")
        right = ((logits.detach().argmax(-1) == labels) & keep).sum()
        return total, keep.sum(), right

    def __call__(self, model, batch):
        import torch

        from ssledu import distributed

        total, n, right = self.sums(model, batch)
        if torch.is_grad_enabled() and distributed.is_active():
            count = distributed.global_count(n).to(total)
            loss = total * distributed.world_size() / count.clamp(min=1)
        else:
            loss = total / n.clamp(min=1)
        return loss, {self.accuracy_name: right.float() / n.clamp(min=1)}


def _eval_metrics(token_loss: TokenLoss, max_batches: int | None):
    """``eval_fn`` for ``fit``: perplexity (exp of the mean batch loss, as ``val_loss``) and
    token accuracy over the first ``max_batches`` evaluation batches."""

    def eval_fn(model, loader):
        import torch

        device = next(model.parameters()).device
        losses, right, count = [], 0, 0
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            total, n, r = token_loss.sums(model, batch)
            losses.append(float(total) / max(int(n), 1))
            right, count = right + int(r), count + int(n)
        mean = sum(losses) / max(len(losses), 1)
        return {"perplexity": math.exp(min(mean, 50.0)), token_loss.accuracy_name: right / max(count, 1)}

    return eval_fn


# --- texts ------------------------------------------------------------------------------


def load_texts(corpus, *, split_seed: int = 0) -> tuple[list[str], list[str] | None, str]:
    """(train texts, validation texts or None, a short name) of ``corpus``.

    corpus: a folder (every ``*.txt`` in it and its sub-folders, sorted by path, one
    document each), one ``.txt`` file, or a corpus name for ``load_corpus``.
    """
    path = Path(os.path.expanduser(str(corpus)))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"the corpus folder {path} holds no .txt files; put your texts there as "
                             "UTF-8 .txt files (one document each) or name a corpus such as toyworld")
        texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise ValueError(f"all {len(files)} .txt files in {path} are empty; add some text to train on")
        return texts, None, path.name
    if path.suffix == ".txt" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no such corpus file: {path}")
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise ValueError(f"the corpus file {path} is empty; add some text to train on")
        return [text], None, path.stem
    if os.sep in str(corpus) or str(corpus).startswith("."):
        raise FileNotFoundError(f"no such corpus folder: {path}; give a folder of .txt files or a "
                                "corpus name (toyworld, pydocs, tiny_shakespeare, ...)")
    from ssledu.data.hub import load_corpus

    ds = load_corpus(str(corpus))
    if "text" not in ds["train"].column_names:
        raise ValueError(f"corpus {corpus!r} has no text column; pretraining needs text")
    val = list(ds["validation"]["text"]) if "validation" in ds else None
    return list(ds["train"]["text"]), val, str(corpus)


# --- settings ---------------------------------------------------------------------------


def _read_config(file) -> dict:
    """A --config file (JSON or TOML) as a dict, every key checked."""
    if file is None:
        return {}
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    try:
        if path.suffix == ".toml":
            import tomllib

            config = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ValueError(f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: "
                         f"{err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"config file {path} must hold one object of settings; got {type(config).__name__}")
    unknown = sorted(set(config) - set(DEFAULTS) - set(_CONFIG_TABLES))
    if unknown:
        raise ValueError(f"config file {path}: unknown setting(s) {', '.join(unknown)}; known: "
                         f"{', '.join(list(DEFAULTS) + list(_CONFIG_TABLES))}")
    for table in _CONFIG_TABLES:
        if not isinstance(config.get(table, {}), dict):
            raise ValueError(f"config file {path}: {table!r} must be a table of settings, e.g. "
                             f'"{table}": {{"n_layer": 3}}')
    bad = sorted(set(config.get("tokenizer", {})) - {"kind", "vocab_size", "lowercase"})
    if bad:
        raise ValueError(f"config file {path}: unknown tokenizer setting(s) {', '.join(bad)}; known: "
                         "kind, vocab_size, lowercase")
    return config


def _check_out(out: Path, objective: str, preset: str, resume: bool, processes: int) -> dict | None:
    """Refuse an --out that would be overwritten or resumed wrongly; the saved run or None.

    Nothing is written here: every check passes before the run writes its first file.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the run")
    saved_file = out / _RUN_FILE
    if resume:
        if not saved_file.is_file():
            raise ValueError(f"--resume: {out} holds no pretraining run ({_RUN_FILE} is missing); "
                             "drop --resume to start one there")
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
        for key, now in (("objective", objective), ("preset", preset)):
            if saved.get(key) != now:
                raise ValueError(f"--resume: {out} holds a {saved.get('objective')} {saved.get('preset')} run, "
                                 f"not {objective} {preset}; resume it with `ssledu pretrain "
                                 f"{saved.get('objective')} --preset {saved.get('preset')} ...`, or give "
                                 "another --out for a new run")
        if saved.get("processes", 1) != processes:
            raise ValueError(f"--resume: {out} was trained by {saved.get('processes', 1)} process(es), this "
                             f"run has {processes}; a data position means another batch with another "
                             "number of processes: resume with the same torchrun --nproc_per_node")
        return saved
    if saved_file.is_file():
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
        raise ValueError(f"{out} already holds a {saved.get('objective')} run; pass --resume to continue "
                         "it, or give another --out (nothing was overwritten)")
    # (another process of a torchrun run may be probing the folder right now: its probe is no file)
    if out.is_dir() and any(not p.name.startswith(".probe.tmp-") for p in out.iterdir()):
        raise ValueError(f"--out {out} is not empty; give a new or empty folder (nothing was overwritten)")
    # writable? a probe beside the files the run will write (the folder may not exist yet)
    from ssledu.checkpoint import check_writable

    try:
        check_writable(out / "probe")
    except OSError as err:
        raise ValueError(f"cannot write to --out {out} ({err.strerror or err}); give a folder you "
                         "can write to") from None
    return None


def _blocks(ids, block_size: int, frame, val_fraction: float, seed: int, val_ids=None):
    """(train rows, validation rows) of ``block_size`` ids, each framed by ``frame``."""
    import torch

    from ssledu.data.blocks import pack_blocks, split_blocks

    def pack(docs, name):
        try:
            rows = pack_blocks(docs, block_size)
        except ValueError:
            n = sum(len(d) for d in docs)
            raise ValueError(f"the {name} text gives {n} tokens, fewer than one block of {block_size}; "
                             "add text, or a smaller model context (--config with model.max_len)") from None
        return rows

    train = pack(ids, "training")
    if val_ids is not None and sum(len(d) for d in val_ids) >= block_size:
        val = pack(val_ids, "validation")
    else:
        if len(train) < 2:
            raise ValueError(f"the corpus gives {len(train)} block of {block_size} tokens; at least 2 "
                             "are needed (training and validation): add text")
        train, val = split_blocks(train, val_fraction, seed)
    if frame:
        head, tail = frame
        def wrap(rows):  # (N, block) -> (N, len(head) + block + len(tail))
            n = len(rows)
            return torch.cat([torch.tensor([head] * n, dtype=torch.long).view(n, -1), rows,
                              torch.tensor([tail] * n, dtype=torch.long).view(n, -1)], dim=1)
        train, val = wrap(train), wrap(val)
    return train, val


def _objective_parts(objective: str, tok, model_overrides: dict, preset: str, seed: int, rank: int):
    """(model, collator, block size, frame) of an objective."""
    from ssledu import distributed, models
    from ssledu.conventions import context_length

    spec = _SPEC[objective]
    overrides = {"dropout": 0.0, **model_overrides}  # a short run from scratch: no dropout
    model = getattr(models, spec["builder"])(tok, preset, **overrides)
    L = context_length(model)
    if objective == "clm":
        from ssledu.objectives.clm import clm_collator

        return model, clm_collator(tok.pad_token_id), L, None
    if objective == "mlm":
        from ssledu.objectives.mlm import MLMCollator

        collate = distributed.RankCollator(MLMCollator(tok, seed=seed, model=model), rank)
        return model, collate, L - 2, ([tok.cls_token_id], [tok.sep_token_id])
    if objective == "prefix":
        from ssledu.objectives.prefix import UniLMMixture

        collate = distributed.RankCollator(UniLMMixture(("prefix",), tokenizer=tok, seed=seed), rank)
        return model, collate, L, None
    from ssledu.objectives.denoise import BARTCollator

    # infilling can insert a [MASK] (a span of length 0): leave the input a few positions
    collate = distributed.RankCollator(BARTCollator(tok, seed=seed, model=model), rank)
    return model, collate, L - 2 - max(4, L // 16), ([tok.bos_token_id], [tok.eos_token_id])


def _shared_tokenizer(tok_dir: Path):
    """Rank 0's tokenizer in every process, also on machines that do not share its disk."""
    import tempfile

    from ssledu import distributed
    from ssledu.data.tokenize import load_tokenizer

    files = {p.name: p.read_bytes() for p in tok_dir.iterdir()} if distributed.is_main() else None
    files = distributed.broadcast_object(files)
    if distributed.is_main() or tok_dir.is_dir():
        return load_tokenizer(tok_dir)
    with tempfile.TemporaryDirectory() as copy:
        for name, data in files.items():
            (Path(copy) / name).write_bytes(data)
        return load_tokenizer(copy)


def _tokens_per_s(history) -> float:
    """Tokens of all logged steps / their training seconds (the steps' own timings)."""
    total, prev = 0.0, 0.0
    for s in history.steps:
        total += s["tokens_per_s"] * (s["elapsed_s"] - prev)
        prev = s["elapsed_s"]
    return total / prev if prev > 0 else 0.0


# --- the pipeline -----------------------------------------------------------------------


def pretrain(objective: str, corpus, *, preset: str = "nano", out, steps: int | None = None,
             seconds: float | None = None, config=None, resume: bool = False, progress: bool = True,
             device=None, **settings) -> dict:
    """Run the whole pretraining pipeline (see the module docstring); return the summary dict.

    objective: "mlm" | "clm" | "prefix" | "denoise"; corpus: a name or a folder of .txt
    files; preset: "nano" | "tiny" | "small"; out: the run's folder (new or empty, or the
    run to continue with ``resume=True``); budget: ``steps`` (total, earlier steps of a
    resumed run included) or ``seconds`` of training; config: a JSON / TOML file;
    ``settings``: keys of ``DEFAULTS`` (they win over the file). Under torchrun every
    process runs this; rank 0 trains the tokenizer, prints and writes.
    Summary keys: objective, preset, corpus, processes, device, precision, params, steps,
    train_s, tokens_per_s, train_loss, val_loss, perplexity, the accuracy, stopped, out.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; available: {', '.join(OBJECTIVES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    if (steps is None) == (seconds is None):
        raise ValueError("give one budget: steps=N (--steps) or seconds=S (--seconds)")
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    file_config = _read_config(config)
    cfg = {**DEFAULTS, **{k: v for k, v in file_config.items() if k in DEFAULTS},
           **{k: v for k, v in settings.items() if v is not None}}
    out = Path(os.path.expanduser(str(out)))
    processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
    saved = _check_out(out, objective, preset, resume, processes)
    model_overrides = dict(file_config.get("model", {}))
    tok_settings = dict(file_config.get("tokenizer", {}))
    if saved is not None:  # a resumed run keeps what it was built with
        model_overrides, tok_settings = saved["model"], saved["tokenizer"]
        if str(corpus) != saved["corpus"]:
            raise ValueError(f"--resume: {out} was trained on --corpus {saved['corpus']}, not {corpus}; "
                             "resume with the same corpus")
    texts, val_texts, corpus_name = load_texts(corpus)

    from ssledu import distributed

    info = distributed.init(timeout_s=cfg["timeout_s"], device=device)
    try:
        return _run(objective, corpus, corpus_name, texts, val_texts, preset, out, steps, seconds, cfg,
                    model_overrides, tok_settings, saved, info, progress)
    finally:
        distributed.shutdown()


def _run(objective, corpus, corpus_name, texts, val_texts, preset, out, steps, seconds, cfg,
         model_overrides, tok_settings, saved, info, progress):
    import torch

    from ssledu import distributed, models
    from ssledu.data.blocks import encode_texts
    from ssledu.data.tokenize import save_tokenizer, train_tokenizer
    from ssledu.train import _use_bf16, fit

    spec = _SPEC[objective]
    tok_dir = out / "tokenizer"
    if info.rank == 0 and saved is None:
        # one process trains it: equal-frequency merges could be ordered differently per process
        out.mkdir(parents=True, exist_ok=True)
        kind = tok_settings.get("kind", spec["tokenizer"])
        tok = train_tokenizer(texts, kind, tok_settings.get("vocab_size"),
                              lowercase=tok_settings.get("lowercase", False))
        save_tokenizer(tok, tok_dir)
        record = {"format": _FORMAT, "objective": objective, "preset": preset, "corpus": str(corpus),
                  "processes": info.world_size, "model": model_overrides, "tokenizer": tok_settings,
                  "settings": {k: v for k, v in cfg.items()}}
        (out / _RUN_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    tok = _shared_tokenizer(tok_dir)

    torch.manual_seed(cfg["seed"])  # the same initial weights in every process (DDP also copies rank 0's)
    model, collate, block, frame = _objective_parts(objective, tok, model_overrides, preset, cfg["seed"],
                                                    info.rank)
    ids = encode_texts(tok, texts)
    val_ids = encode_texts(tok, val_texts) if val_texts else None
    train, val = _blocks(ids, block, frame, cfg["val_fraction"], cfg["seed"], val_ids)

    loss = TokenLoss(shift=spec["shift"], accuracy_name=spec["accuracy"])
    history = fit(model, train, collate_fn=collate, eval_data=val, batch_size=cfg["batch_size"], lr=cfg["lr"],
                  weight_decay=cfg["weight_decay"], warmup_steps=cfg["warmup_steps"], max_steps=steps,
                  max_seconds=seconds, clip_norm=cfg["clip_norm"], eval_every=cfg["eval_every"],
                  eval_batches=cfg["eval_batches"], eval_fn=_eval_metrics(loss, cfg["eval_batches"]),
                  loss_fn=loss, device=info.device, precision=cfg["precision"], seed=cfg["seed"],
                  checkpoint_dir=out / "checkpoint", checkpoint_every=cfg["checkpoint_every"],
                  resume_from=True if saved is not None else None, live_plot=False,
                  progress=progress and info.rank == 0)
    last = history.evals[-1] if history.evals else {}
    summary = {
        "objective": objective, "preset": preset, "corpus": corpus_name, "processes": info.world_size,
        "device": str(info.device), "precision": "bf16" if _use_bf16(info.device, cfg["precision"]) else "fp32",
        "params": models.count_parameters(model), "batch": f"{info.world_size}x{cfg['batch_size']}x{train.shape[1]}",
        "steps": history.steps[-1]["step"] if history.steps else 0,
        "train_s": round(history.elapsed_s, 2), "tokens_per_s": round(_tokens_per_s(history)),
        "train_loss": history.final_loss, "val_loss": last.get("val_loss"),
        "perplexity": last.get("perplexity"), spec["accuracy"]: last.get(spec["accuracy"]),
        "stopped": history.stopped, "out": str(out), "checkpoint": str(out / "checkpoint"),
    }
    if info.rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def format_summary(s: dict) -> str:
    """The final line: what ran, how fast, how good, where the model is."""
    acc = next((k for k in ("masked_accuracy", "token_accuracy") if k in s), None)
    parts = [f"val loss {s['val_loss']:.4f}" if s.get("val_loss") is not None else "no evaluation"]
    if s.get("perplexity") is not None:
        parts.append(f"perplexity {s['perplexity']:.2f}")
    if acc and s.get(acc) is not None:
        parts.append(f"{acc.replace('_', ' ')} {s[acc]:.3f}")
    return (f"pretrained {s['objective']} {s['preset']} on {s['corpus']} ({s['processes']} process"
            f"{'es' if s['processes'] > 1 else ''}, {s['device']}, {s['precision']}, {s['params'] / 1e6:.2f}M "
            f"params): {s['steps']} steps in {s['train_s']:.1f} s, {s['tokens_per_s']:,} tok/s; "
            f"{', '.join(parts)}; model in {s['checkpoint']}")


# --- the command ------------------------------------------------------------------------


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be a number above 0; got {text!r}")
        return value

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``pretrain`` arguments (a bad value exits with status 2 and the usage)."""
    p.add_argument("objective", choices=OBJECTIVES, help="mlm (BERT), clm (GPT), prefix (UniLM), denoise (BART)")
    p.add_argument("--corpus", required=True, help="a corpus name (toyworld, pydocs, tiny_shakespeare, ...) "
                   "or a folder of .txt files")
    p.add_argument("--preset", choices=PRESETS, default="nano", help="model size (default nano)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=_positive(int), help="optimizer steps in all (a resumed run included)")
    budget.add_argument("--seconds", type=_positive(float), help="seconds of training")
    p.add_argument("--config", help="JSON or TOML file of settings: " + ", ".join(DEFAULTS)
                   + ", and tables model, tokenizer")
    p.add_argument("--out", required=True, help="folder of the run (new or empty; or the run to --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--batch-size", type=_positive(int), help="rows per process and step (default 32)")
    p.add_argument("--lr", type=_positive(float), help="peak learning rate (default 1e-3)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="auto (default): bf16 where the hardware runs it natively")
    p.add_argument("--json", action="store_true", help="print the summary as JSON only")


def run(args: argparse.Namespace) -> int:
    """``ssledu pretrain``: the exit status (2 for a bad input, with the reason on stderr)."""
    settings = {"batch_size": args.batch_size, "lr": args.lr, "precision": args.precision}
    call = dict(preset=args.preset, out=args.out, steps=args.steps, seconds=args.seconds, config=args.config,
                resume=args.resume, progress=True, **settings)
    main = int(os.environ.get("RANK", "0") or 0) == 0
    try:
        if args.json:  # JSON only on stdout: what the run prints on the way goes to stderr
            with contextlib.redirect_stdout(sys.stderr):
                summary = pretrain(args.objective, args.corpus, **call)
            if main:
                print(json.dumps(summary, indent=2))
        else:
            t0 = time.perf_counter()
            summary = pretrain(args.objective, args.corpus, **call)
            if main:
                print(format_summary(summary) + f" ({time.perf_counter() - t0:.0f} s in all)")
    except (ValueError, OSError) as err:
        print(f"ssledu pretrain: {err}", file=sys.stderr)
        return 2
    return 0
