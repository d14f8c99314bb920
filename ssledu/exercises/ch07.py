"""Exercises of chapter 07 (CLIP's symmetric loss, MAE's masking, reading a reconstruction loss)."""

from __future__ import annotations

import math
import random

from ssledu.check import Exercise, as_float as _float, choice, register


# --- 1. CLIP's loss by hand ----------------------------------------------------------


def _cases_clip(rng: random.Random):
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    n, d = rng.randrange(2, 7), rng.randrange(3, 9)
    img = torch.randn(n, d, generator=g, dtype=torch.float64) * rng.choice([0.5, 1.0, 3.0])
    # captions close to their images, and lengths that differ: only cosines may count
    txt = 2.0 * img + torch.randn(n, d, generator=g, dtype=torch.float64)
    # a skewed batch: one image near two captions, so the two directions disagree
    txt[0] = txt[0] + 0.8 * txt[-1]
    return [{"image_embeds": img, "text_embeds": txt, "logit_scale": rng.choice([0.0, 1.0, math.log(1 / 0.07)])}]


def _ref_clip(image_embeds, text_embeds, logit_scale):
    from ssledu.objectives import multimodal

    return float(multimodal.clip_loss(image_embeds, text_embeds, logit_scale))


_clip_last: dict = {}


def _ref_clip_remembering(image_embeds, text_embeds, logit_scale):
    _clip_last["case"] = (image_embeds.clone(), text_embeds.clone(), logit_scale)
    return _ref_clip(image_embeds, text_embeds, logit_scale)


def _one_direction(img, txt, s):
    import torch
    import torch.nn.functional as F

    logits = math.exp(s) * F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T
    return float(F.cross_entropy(logits, torch.arange(len(img))))


def _compare_clip(got, expected):
    g = _float(got)
    if g is None:
        return "return one number (a float or a 0-d tensor): the loss averaged over both directions"
    if math.isclose(g, expected, rel_tol=1e-5, abs_tol=1e-7):
        return True
    case = _clip_last.get("case")
    if case is not None and math.isclose(g, _one_direction(*case), rel_tol=1e-5, abs_tol=1e-7):
        return ("your loss scores each image against the captions; CLIP also scores each caption against "
                "the images, and the two disagree when one image sits near two captions")
    return (f"your loss is {g:.6g}; are the similarities cosines, multiplied by exp(logit_scale) "
            "(logit_scale is a log), and is the correct class of row i column i?")


register(
    Exercise(
        name="clip_loss_by_hand",
        chapter="07",
        description="CLIP's symmetric image-text loss with a learnable log-temperature",
        reference=_ref_clip_remembering,
        cases=_cases_clip,
        compare=_compare_clip,
        n_cases=6,
        hint="normalise both sets of rows, build the N x N matrix of scaled cosines, and take a "
        "cross-entropy whose correct class is the matching pair; think about what the columns of "
        "that matrix are classifying",
    )
)


# --- 2. MAE's mask from noise ----------------------------------------------------------


def _cases_mask(rng: random.Random):
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    b, n = rng.randrange(1, 4), rng.choice([4, 9, 16, 49])
    return [{"noise": torch.rand(b, n, generator=g), "mask_ratio": rng.choice([0.25, 0.5, 0.75, 0.9])}]


def _ref_mask(noise, mask_ratio):
    import torch

    from ssledu.objectives import multimodal

    return multimodal.random_masking(torch.zeros(*noise.shape, 1), noise, mask_ratio)[1]


def _compare_mask(got, expected):
    import torch

    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        return f"return a tensor of shape (B, L) = {tuple(expected.shape)}, 1 for a removed patch, 0 for a kept one"
    got = got.float()
    if torch.equal(got, expected):
        return True
    if torch.equal(got, 1 - expected):
        return "your mask is exactly inverted: 1 must mean removed (hidden from the encoder), 0 kept"
    n_removed, want = int(got[0].sum()), int(expected[0].sum())
    if n_removed != want:
        return (f"your mask removes {n_removed} of {expected.shape[1]} patches in a row; MAE keeps "
                "int(L * (1 - mask_ratio)) of them and removes the rest")
    return "the right number of patches is removed, but not the right ones: which noise values are kept?"


register(
    Exercise(
        name="mae_mask_by_hand",
        chapter="07",
        description="MAE's random mask from an explicit noise tensor (transformers' rule)",
        reference=_ref_mask,
        cases=_cases_mask,
        compare=_compare_mask,
        n_cases=6,
        hint="sort each row's noise; a fixed number of patches at one end of that order is kept, "
        "and the mask is then written back in the patches' own order",
    )
)


# --- 3. reading the reconstruction loss --------------------------------------------------


register(
    Exercise(
        name="mae_small_loss",
        chapter="07",
        description="multiple choice: why a tiny MAE loss on the scenes says little about the features",
        reference=lambda: "b",
        compare=choice(
            "compare the loss with what a model that knows nothing about the scene would score: "
            "what colour are most pixels of a random 4 x 4 patch?"
        ),
        hint="a loss is small or large only relative to a baseline; find the cheapest prediction "
        "that already scores close to it",
        kind="answer",
    )
)
