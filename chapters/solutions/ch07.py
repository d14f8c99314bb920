"""Worked solutions for chapter 07's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import torch
import torch.nn.functional as F

SOLUTIONS = {}
WRONG = {}


# --- chapter 07 -------------------------------------------------------------

def clip_loss_by_hand(image_embeds, text_embeds, logit_scale):
    img = F.normalize(image_embeds, dim=1)  # (N, D) unit rows
    txt = F.normalize(text_embeds, dim=1)
    logits = torch.exp(torch.as_tensor(logit_scale, dtype=img.dtype)) * img @ txt.T  # (N, N) images x captions
    target = torch.arange(len(img))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def clip_loss_by_hand_wrong(image_embeds, text_embeds, logit_scale):  # images -> captions only
    img, txt = F.normalize(image_embeds, dim=1), F.normalize(text_embeds, dim=1)
    logits = torch.exp(torch.as_tensor(logit_scale, dtype=img.dtype)) * img @ txt.T
    return F.cross_entropy(logits, torch.arange(len(img)))


SOLUTIONS["clip_loss_by_hand"] = clip_loss_by_hand
WRONG["clip_loss_by_hand"] = clip_loss_by_hand_wrong


def mae_mask_by_hand(noise, mask_ratio):
    b, n = noise.shape
    len_keep = int(n * (1 - mask_ratio))
    ids_shuffle = noise.argsort(dim=1)  # smallest noise first: those are kept
    mask = torch.ones(b, n)
    mask.scatter_(1, ids_shuffle[:, :len_keep], 0.0)
    return mask


def mae_mask_by_hand_wrong(noise, mask_ratio):  # keeps the LARGEST noise values
    b, n = noise.shape
    len_keep = int(n * (1 - mask_ratio))
    ids_shuffle = noise.argsort(dim=1, descending=True)
    mask = torch.ones(b, n)
    mask.scatter_(1, ids_shuffle[:, :len_keep], 0.0)
    return mask


SOLUTIONS["mae_mask_by_hand"] = mae_mask_by_hand
WRONG["mae_mask_by_hand"] = mae_mask_by_hand_wrong

# (a) the decoder is too small, (b) most pixels are background, so predicting the background
# colour everywhere already scores almost as well, (c) the learning rate, (d) norm_pix_loss.
SOLUTIONS["mae_small_loss"] = "b"
WRONG["mae_small_loss"] = "a"
