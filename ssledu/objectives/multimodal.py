"""Images and words supervising each other (CLIP), and an image supervising itself (MAE).

CLIP (Radford et al. 2021): an image tower and a text tower map N matching (image, caption)
pairs to unit vectors; ``logits = exp(s) * img @ txt.T`` is an N x N matrix whose diagonal holds
the true pairs, and the loss is the cross-entropy of picking the right caption for each image
(rows) and the right image for each caption (columns), averaged:

- ``clip_logits``, ``clip_loss``: the symmetric loss with a learnable log-temperature ``s``
  (``LOGIT_SCALE_INIT`` = ln(1/0.07), clamped at ``LOGIT_SCALE_MAX`` = ln 100 after each step
  by ``clamp_logit_scale_``).
- ``tokenize_captions``: captions -> (input_ids, attention_mask) ending in [EOS], where
  transformers' CLIP text tower pools; ``check_caption_ids`` rejects ids outside the vocabulary.
- ``image_features``, ``text_features``: normalised embeddings of a ``CLIPModel``.
- ``zero_shot_classifier`` (per class, the mean of the normalised embeddings of its prompts,
  renormalised), ``zero_shot_predict``, ``recall_at_k`` (image -> text and text -> image).

MAE (He et al. 2022): cut the image into patches, drop a random 75 %, encode the rest, and
regress the pixels of the dropped patches:

- ``patchify`` / ``unpatchify``: (B, C, H, W) <-> (B, L, p * p * C), transformers' layout.
- ``random_masking``: the patches with the smallest noise are kept (``argsort(noise)``), so an
  explicit noise tensor (``mask_noise`` with a generator) reproduces a mask exactly.
- ``mae_loss``: per-patch mean squared error, averaged over the masked patches only;
  ``norm_pix_loss`` normalises each target patch by its mean and unbiased variance.
- ``mae_features``: the encoder read without masking (``ViTMAEModel`` masks at inference too).

Everything matches transformers 5.2x ``CLIPModel(return_loss=True)`` and
``ViTMAEForPreTraining`` (see tests/test_multimodal.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssledu.conventions import check_ids, eval_mode, pad_batch

__all__ = [
    "LOGIT_SCALE_INIT",
    "LOGIT_SCALE_MAX",
    "clip_logits",
    "clip_loss",
    "clamp_logit_scale_",
    "tokenize_captions",
    "check_caption_ids",
    "image_features",
    "text_features",
    "zero_shot_classifier",
    "zero_shot_predict",
    "recall_at_k",
    "check_mask_ratio",
    "patchify",
    "unpatchify",
    "mask_noise",
    "random_masking",
    "mae_loss",
    "masked_images",
    "mae_features",
]

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP's initial temperature 0.07
LOGIT_SCALE_MAX = math.log(100.0)  # CLIP clips the logit scale at 100 "to prevent scaling ... more than 100"


# ------------------------------------------------------------------------------- CLIP


def _check_pairs(image_embeds, text_embeds) -> None:
    for name, x in (("image_embeds", image_embeds), ("text_embeds", text_embeds)):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or len(x) < 1:
            raise ValueError(f"{name} must be a (N, D) tensor with N >= 1; got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"image_embeds {tuple(image_embeds.shape)} and text_embeds {tuple(text_embeds.shape)} must have the "
            "same shape: row i of each is one matching (image, caption) pair"
        )


def clip_logits(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale) -> torch.Tensor:
    """logits_per_image (N, M) = exp(logit_scale) * cos(image_i, text_j).

    image_embeds (N, D), text_embeds (M, D), any length (normalised here); logit_scale: the
    log of the inverse temperature, a number or a 0-d tensor (CLIP's learnable ``s``).
    logits_per_text is the transpose.
    """
    img = F.normalize(image_embeds, dim=-1)
    txt = F.normalize(text_embeds, dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=img.dtype, device=img.device).exp()
    return scale * img @ txt.T  # (N, M)


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale) -> torch.Tensor:
    """CLIP's symmetric contrastive loss; row i of the two (N, D) inputs is a true pair.

    (CE(logits_per_image, arange N) + CE(logits_per_text, arange N)) / 2, a scalar; a random
    model scores about ln N. Equal to ``CLIPModel(return_loss=True).loss`` on its embeddings.
    """
    _check_pairs(image_embeds, text_embeds)
    logits = clip_logits(image_embeds, text_embeds, logit_scale)  # (N, N) images x captions
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.no_grad()
def clamp_logit_scale_(model_or_param, max_value: float = LOGIT_SCALE_MAX) -> float:
    """Clamp CLIP's ``logit_scale`` in place at ln 100 (call after each optimiser step).

    Accepts a ``CLIPModel`` (or anything with ``.logit_scale``) or the parameter itself;
    returns the value after clamping. Without the clamp the temperature can run to zero and
    the logits blow up (Radford et al. 2021, section 2.5).
    """
    p = getattr(model_or_param, "logit_scale", model_or_param)
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"expected a CLIPModel or its logit_scale parameter; got {type(model_or_param).__name__}")
    p.clamp_(max=max_value)
    return float(p)


def check_caption_ids(input_ids: torch.Tensor, vocab_size: int, eos_token_id: int) -> torch.Tensor:
    """Validate a (B, L) batch of caption ids for CLIP's text tower; returns it.

    Every id must lie in [0, vocab_size) (the embedding lookup would fail or read garbage) and
    every row must contain ``eos_token_id``, where the tower pools.
    """
    ids = check_ids(input_ids, what="caption ids", vocab_size=vocab_size)
    ids = torch.as_tensor(ids)
    if ids.ndim != 2:
        raise ValueError(f"caption ids must be a (B, L) batch; got shape {tuple(ids.shape)}")
    missing = (~(ids == eos_token_id).any(1)).nonzero().flatten().tolist()
    if missing:
        raise ValueError(
            f"caption rows {missing[:5]} have no EOS id {eos_token_id}: CLIP's text tower pools the hidden "
            "state at the first EOS, so every caption must end with it (use multimodal.tokenize_captions)"
        )
    return ids


def tokenize_captions(tokenizer, captions: Sequence[str], *, max_length: int | None = None) -> dict:
    """Captions -> ``{"input_ids", "attention_mask"}``, both (B, L) long, each row ending in [EOS].

    tokenizer: a course tokenizer (``ssledu.data.tokenize.train_tokenizer``, kind "word" suits
    toyworld's fixed vocabulary). Rows are padded with [PAD] to the longest caption (L <=
    ``max_length`` when given; a longer caption is an error, not silently cut, since cutting
    would drop its EOS).
    """
    if isinstance(captions, str):
        captions = [captions]
    captions = list(captions)
    if not captions or not all(isinstance(c, str) for c in captions):
        raise ValueError("captions must be a non-empty list of strings")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None or pad is None:
        raise ValueError("the tokenizer needs [EOS] and [PAD] tokens (ssledu.data.tokenize.train_tokenizer has both)")
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in captions]
    longest = max(len(r) for r in rows)
    if max_length is not None and longest > max_length:
        raise ValueError(
            f"a caption has {longest} tokens with its EOS, more than max_length={max_length} (the text "
            "tower's max_len); shorten the captions or build the model with a larger max_len"
        )
    return pad_batch(rows, pad)  # {"input_ids", "attention_mask"}, (B, L) long


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def image_features(model, pixel_values: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Normalised image embeddings (N, projection_dim) of a ``CLIPModel``, in eval mode."""
    with eval_mode(model):
        out = [model.get_image_features(pixel_values=pixel_values[s]).pooler_output
               for s in _batches(len(pixel_values), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def text_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                  batch_size: int = 256) -> torch.Tensor:
    """Normalised caption embeddings (N, projection_dim) of a ``CLIPModel``, in eval mode.

    The ids are checked first (``check_caption_ids``): inside the vocabulary, one EOS per row.
    """
    cfg = model.config.text_config
    input_ids = check_caption_ids(input_ids, cfg.vocab_size, cfg.eos_token_id)
    out = []
    with eval_mode(model):
        for s in _batches(len(input_ids), batch_size):
            am = None if attention_mask is None else attention_mask[s]
            out.append(model.get_text_features(input_ids=input_ids[s], attention_mask=am).pooler_output)
    return F.normalize(torch.cat(out), dim=-1)


def zero_shot_classifier(model, tokenizer, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """One unit vector per class from prompt templates: (C, projection_dim).

    Each template holds ``{}`` for the class name ("a {} shape"); a class's vector is the mean
    of its normalised prompt embeddings, renormalised (CLIP's prompt ensembling).
    """
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError(f"templates must be strings holding '{{}}' for the class name, e.g. 'a {{}} shape'; "
                         f"got {templates!r}")
    if not classnames:
        raise ValueError("classnames must name at least one class")
    max_len = model.config.text_config.max_position_embeddings
    weights = []
    for name in classnames:
        batch = tokenize_captions(tokenizer, [t.format(name) for t in templates], max_length=max_len)
        emb = text_features(model, batch["input_ids"], batch["attention_mask"])  # (T, D), unit rows
        weights.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(weights)  # (C, D)


def zero_shot_predict(image_embeds: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Index (N,) of the class whose vector is closest (cosine) to each image embedding."""
    return (F.normalize(image_embeds, dim=-1) @ F.normalize(classifier, dim=-1).T).argmax(-1)


def recall_at_k(image_embeds: torch.Tensor, text_embeds: torch.Tensor, ks: Sequence[int] = (1, 5), *,
                groups=None) -> dict:
    """Retrieval recall@k in both directions for N pairs (row i of each input is a true pair).

    ``image_to_text@k``: fraction of images whose caption is among the k most similar
    captions; ``text_to_image@k`` the other way. ``groups`` (N,): pairs with equal group
    count as correct for each other (identical captions of different scenes); default: only
    the pair itself. Returns ``{"image_to_text@1": ..., "text_to_image@1": ..., ...}``.
    """
    _check_pairs(image_embeds, text_embeds)
    n = len(image_embeds)
    ks = [ks] if isinstance(ks, int) else list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n for k in ks):
        raise ValueError(f"every k must be an integer in 1..N = {n}; got {ks!r}")
    g = torch.arange(n) if groups is None else torch.as_tensor(groups)
    if g.shape != (n,):
        raise ValueError(f"groups must have one entry per pair, shape ({n},); got {tuple(g.shape)}")
    sim = clip_logits(image_embeds, text_embeds, 0.0)  # (N, N) cosines
    result = {}
    for name, s in (("image_to_text", sim), ("text_to_image", sim.T)):
        top = s.topk(max(ks), dim=1).indices  # (N, k_max) best candidates of each query
        hit = g[top] == g[:, None]  # (N, k_max)
        for k in ks:
            result[f"{name}@{k}"] = float(hit[:, :k].any(1).float().mean())
    return result


# -------------------------------------------------------------------------------- MAE


def check_mask_ratio(mask_ratio) -> float:
    """mask_ratio as a float in (0, 1), or a clear error."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1); got {mask_ratio!r} (the MAE paper uses 0.75)")
    return float(mask_ratio)


def _check_patch(images: torch.Tensor, patch_size: int) -> None:
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer; got {patch_size!r}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor; got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    h, w = images.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(
            f"images of {h} x {w} pixels do not divide into {patch_size} x {patch_size} patches; "
            f"pick a patch size that divides both sides (e.g. {math.gcd(h, w)}) or crop/pad the images"
        )


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, p * p * C), L = (H / p) (W / p) patches in row-major order.

    Within a patch the values run row, column, channel (transformers' ViTMAE layout).
    """
    _check_patch(images, patch_size)
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, image_size, channels: int = 3) -> torch.Tensor:
    """(B, L, p * p * C) -> (B, C, H, W); the inverse of ``patchify``. image_size: H or (H, W)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    p = patch_size
    b, n, d = patches.shape
    if h % p or w % p or n != (h // p) * (w // p) or d != p * p * channels:
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not make {channels} x {h} x {w} images with "
            f"{p} x {p} patches (need L = {(h // p) * (w // p)} and {p * p * channels} values per patch)"
        )
    x = patches.reshape(b, h // p, w // p, p, p, channels)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(b, channels, h, w)


def mask_noise(batch_size: int, num_patches: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise (B, L) that decides a mask: pass it to ``random_masking`` or to
    ``ViTMAEForPreTraining(..., noise=noise)``; the same generator seed gives the same mask."""
    return torch.rand(batch_size, num_patches, generator=generator)


def random_masking(sequence: torch.Tensor, noise: torch.Tensor, mask_ratio: float = 0.75):
    """MAE's per-sample random masking, driven by ``noise`` (B, L).

    sequence: (B, L, D) patch embeddings (or patches). Keeps ``int(L * (1 - mask_ratio))``
    patches, those with the smallest noise. Returns (kept (B, L_keep, D), mask (B, L) with
    1 = removed, ids_restore (B, L): ``argsort(argsort(noise))``, which puts a shuffled
    sequence back in order). Bit-identical to transformers' ``ViTMAEEmbeddings.random_masking``.
    """
    ratio = check_mask_ratio(mask_ratio)
    b, n, d = sequence.shape
    if tuple(noise.shape) != (b, n):
        raise ValueError(f"noise must have shape (B, L) = {(b, n)}, one value per patch; got {tuple(noise.shape)}")
    len_keep = int(n * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the smallest noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    kept = torch.gather(sequence, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))  # (B, L_keep, D)
    mask = torch.ones(b, n, device=sequence.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to the patches' own order
    return kept, mask, ids_restore


def mae_loss(images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int, *,
             norm_pix_loss: bool = False) -> torch.Tensor:
    """Mean squared error of the predicted pixels on the MASKED patches only (a scalar).

    images (B, C, H, W); pred (B, L, p * p * C) (``ViTMAEForPreTraining``'s logits); mask
    (B, L), 1 = removed. norm_pix_loss: each target patch minus its mean, divided by
    sqrt(unbiased variance + 1e-6) (the paper's better-representation variant).
    """
    target = patchify(images, patch_size)  # (B, L, p*p*C)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} must match the patchified images {tuple(target.shape)}")
    if mask.shape != target.shape[:2]:
        raise ValueError(f"mask must be (B, L) = {tuple(target.shape[:2])}; got {tuple(mask.shape)}")
    if norm_pix_loss:
        mean = target.mean(-1, keepdim=True)
        var = target.var(-1, keepdim=True)  # unbiased, as in the paper's code
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = (pred - target).pow(2).mean(-1)  # (B, L)
    # the visible patches were seen by the encoder: copying them is no task, so they do not count
    return (per_patch * mask).sum() / mask.sum()


def masked_images(images: torch.Tensor, mask: torch.Tensor, patch_size: int, fill: float = 0.5) -> torch.Tensor:
    """The images with every removed patch (mask 1) painted ``fill``: what the encoder sees."""
    patches = patchify(images, patch_size)  # (B, L, p*p*C)
    patches = torch.where(mask.bool()[..., None], torch.full_like(patches, fill), patches)
    return unpatchify(patches, patch_size, tuple(images.shape[-2:]), images.shape[1])


@torch.no_grad()
def mae_features(model, images: torch.Tensor, *, pooling: str = "mean", batch_size: int = 256) -> torch.Tensor:
    """Frozen features (N, D) of a ViTMAE encoder read WITHOUT masking.

    ``ViTMAEModel`` masks at inference too; here the mask ratio is set to 0 for the call
    (and restored), so every patch is seen. model: ``ViTMAEForPreTraining`` or ``ViTMAEModel``.
    pooling: "mean" over the patch tokens (MAE's probe, after the final layer norm) or "cls".
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls'; got {pooling!r}")
    vit = getattr(model, "vit", model)
    config = vit.embeddings.config
    old, config.mask_ratio = config.mask_ratio, 0.0
    try:
        out = []
        with eval_mode(vit):
            for s in _batches(len(images), batch_size):
                b = len(images[s])
                n = vit.embeddings.patch_embeddings.num_patches
                # increasing noise keeps the patches in their own order, and draws no random numbers
                noise = torch.arange(n, dtype=torch.float32).expand(b, n)
                h = vit(pixel_values=images[s], noise=noise).last_hidden_state  # (B, 1 + L, D)
                out.append(h[:, 1:].mean(1) if pooling == "mean" else h[:, 0])
    finally:
        config.mask_ratio = old
    return torch.cat(out)
