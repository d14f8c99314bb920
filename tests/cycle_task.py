"""The toy task the training-loop tests share: a GPT learns the cycle 0, 1, ..., V-1, 0, 1, ..."""

import torch

from ssledu import models

V = 16  # vocabulary of the toy task
QUIET = dict(progress=False, live_plot=False)


def cycle_blocks(n=24, length=24):
    """Rows of the cycle at different phases: (n, length) long, a learnable task."""
    start = torch.arange(n) % V
    return (start[:, None] + torch.arange(length)[None, :]) % V  # (n, L)


def clm(examples):
    x = torch.stack(examples)  # (B, L)
    return {"input_ids": x, "labels": x}


def nano(dropout=0.0):
    torch.manual_seed(1)
    return models.gpt(V, "nano", dropout=dropout)


def losses(history):
    return [s["loss"] for s in history.steps]
