"""Tiny transformer models built from `transformers` configs: random weights, no downloads.

Every chapter trains a *real* ecosystem class (``BertForMaskedLM``, ``GPT2LMHeadModel``,
``BartForConditionalGeneration``, ...) at a size a laptop can train. Sizes come from named
presets shared by all builders, in the spirit of minGPT's ``gpt-nano``:

=========  =======  =======  =======  =====  ========  ======================
preset     n_layer  n_head   d_model  d_ff   max_len   meant for
=========  =======  =======  =======  =====  ========  ======================
``nano``   2        2        64       256    128       tests and quick mode
``tiny``   4        4        128      512    256       a CPU classroom
``small``  6        8        384      1536   512       a GPU
=========  =======  =======  =======  =====  ========  ======================

Any preset field can be overridden by its common name (``n_layer``, ``n_head``,
``d_model``, ``d_ff``, ``max_len``, ``dropout``), which is mapped onto each config's own
field names; native config fields (``type_vocab_size``, ``activation_function``, ...)
are accepted too. ``dropout`` sets every dropout probability of the model (default 0.1,
the BERT / GPT-2 / BART papers' value; pass ``dropout=0.0`` for short pretraining runs).

Passing a tokenizer sets ``vocab_size = len(tokenizer)`` and the special-token ids the
model needs (GPT-2's config would otherwise point bos/eos at id 50256, outside a tiny
vocabulary). A plain integer vocabulary size uses the course's fixed special ids
(``SPECIAL_IDS``, the layout of ``ssledu.data.tokenize``) where they fit.

Attention: ``attn="sdpa"`` (default, fast) or ``attn="eager"``, which is required to get
attention maps with ``output_attentions=True`` (sdpa returns none).

Example::

    >>> model = bert(tokenizer, "nano")           # BertForMaskedLM
    >>> describe(model)
    'BertForMaskedLM nano: 2 layers x 2 heads, d=64, 0.12M params, sdpa'
"""

from __future__ import annotations

import math
import os

__all__ = [
    "PRESETS",
    "SPECIAL_IDS",
    "bert",
    "gpt",
    "bart",
    "electra",
    "clip",
    "vit_mae",
    "count_parameters",
    "describe",
]

# Sizes shared by every builder. ``small`` follows nanoGPT's shakespeare-char width (384).
PRESETS: dict[str, dict] = {
    "nano": dict(n_layer=2, n_head=2, d_model=64, d_ff=256, max_len=128, dropout=0.1),
    "tiny": dict(n_layer=4, n_head=4, d_model=128, d_ff=512, max_len=256, dropout=0.1),
    "small": dict(n_layer=6, n_head=8, d_model=384, d_ff=1536, max_len=512, dropout=0.1),
}



def __getattr__(name: str):
    # ``models.SPECIAL_IDS`` is the layout of ``ssledu.data.tokenize`` (its one home), read
    # on first use so that importing this module does not import the tokenizer library.
    if name == "SPECIAL_IDS":
        from ssledu.data.tokenize import SPECIAL_IDS

        return SPECIAL_IDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_COMMON = ("n_layer", "n_head", "d_model", "d_ff", "max_len", "dropout")
_ATTN = ("sdpa", "eager")

# Common name -> the config fields it sets, per model family.
_FIELDS = {
    "bert": {
        "n_layer": ("num_hidden_layers",),
        "n_head": ("num_attention_heads",),
        "d_model": ("hidden_size",),
        "d_ff": ("intermediate_size",),
        "max_len": ("max_position_embeddings",),
        "dropout": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    },
    "gpt2": {
        "n_layer": ("n_layer",),
        "n_head": ("n_head",),
        "d_model": ("n_embd",),
        "d_ff": ("n_inner",),
        "max_len": ("n_positions",),
        "dropout": ("resid_pdrop", "embd_pdrop", "attn_pdrop"),
    },
    "bart": {
        "n_layer": ("encoder_layers", "decoder_layers"),
        "n_head": ("encoder_attention_heads", "decoder_attention_heads"),
        "d_model": ("d_model",),
        "d_ff": ("encoder_ffn_dim", "decoder_ffn_dim"),
        "max_len": ("max_position_embeddings",),
        "dropout": ("dropout", "attention_dropout", "activation_dropout"),
    },
    "electra": {
        "n_layer": ("num_hidden_layers",),
        "n_head": ("num_attention_heads",),
        "d_model": ("hidden_size", "embedding_size"),
        "d_ff": ("intermediate_size",),
        "max_len": ("max_position_embeddings",),
        "dropout": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    },
}


# --- resolving presets, overrides and tokenizers ---------------------------------------


def _resolve(family: str, config_cls, preset: str, attn: str | None, overrides: dict):
    """Preset + overrides -> (config kwargs, size summary). Validates everything."""
    if preset not in PRESETS:
        raise ValueError(
            f"unknown preset {preset!r}; available: {', '.join(PRESETS)} "
            "(or pick one and override fields, e.g. preset='nano', n_layer=4)"
        )
    attn = "sdpa" if attn is None else attn
    if attn not in _ATTN:
        raise ValueError(
            f"attn must be 'sdpa' or 'eager'; got {attn!r} "
            "(use 'eager' when you want attention maps from output_attentions=True)"
        )
    size = dict(PRESETS[preset])
    native = {}
    known_native = set(config_cls().to_dict())
    for key, value in overrides.items():
        if key in _COMMON:
            size[key] = value
        elif key in known_native or key in ("num_labels",):
            native[key] = value
        else:
            raise ValueError(
                f"unknown override {key!r} for {config_cls.__name__}; use one of "
                f"{', '.join(_COMMON)} or a field of {config_cls.__name__} "
                f"(e.g. {', '.join(sorted(k for k in known_native if not k.startswith('_'))[:4])}, ...)"
            )
    for key in ("n_layer", "n_head", "d_model", "d_ff", "max_len"):
        value = size[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive integer; got {value!r}")
    if size["d_model"] % size["n_head"]:
        raise ValueError(
            f"d_model={size['d_model']} is not divisible by n_head={size['n_head']}; "
            f"pick a d_model that is a multiple of n_head (e.g. d_model="
            f"{math.ceil(size['d_model'] / size['n_head']) * size['n_head']})"
        )
    dropout = size["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {size['dropout']!r}")
    kwargs = {}
    for common, fields in _FIELDS[family].items():
        for field in fields:
            kwargs[field] = size[common]
    kwargs.update(native)  # a native field wins over the preset mapping
    kwargs["attn_implementation"] = attn
    return kwargs, size, attn


def _vocab(tokenizer_or_vocab_size) -> tuple[int, dict]:
    """(vocab_size, special ids) from a tokenizer or an integer vocabulary size."""
    from ssledu.data.tokenize import SPECIAL_IDS

    if isinstance(tokenizer_or_vocab_size, bool):
        raise TypeError("pass a tokenizer or an integer vocabulary size, not a bool")
    if isinstance(tokenizer_or_vocab_size, (str, bytes, os.PathLike)):
        raise TypeError(
            f"got the name or path {str(tokenizer_or_vocab_size)!r}, but a model needs the "
            "tokenizer itself (or an integer vocabulary size); load it first: "
            "tok = ssledu.data.tokenize.load_tokenizer(path), then pass tok"
        )
    if isinstance(tokenizer_or_vocab_size, int):
        v = tokenizer_or_vocab_size
        if v < 2:
            raise ValueError(f"vocab_size must be at least 2; got {v}")
        ids = {k: i for k, i in SPECIAL_IDS.items() if i < v}
        return v, ids
    tok = tokenizer_or_vocab_size
    if not hasattr(tok, "__len__") or not hasattr(tok, "convert_ids_to_tokens"):
        raise TypeError(
            f"expected a tokenizer (e.g. from ssledu.data.tokenize.train_tokenizer) or an int "
            f"vocabulary size; got {type(tok).__name__}"
        )
    ids = {}
    for name in SPECIAL_IDS:
        value = getattr(tok, f"{name}_token_id", None)
        if isinstance(value, int):
            ids[name] = value
    return len(tok), ids


def _finish(model, preset: str, size: dict):
    # Remembered in config.json so `describe` still knows the preset after from_pretrained.
    model.config.ssledu_preset = preset if _is_preset(preset, size) else f"{preset}*"
    return model


def _is_preset(preset: str, size: dict) -> bool:
    return all(size[k] == v for k, v in PRESETS[preset].items())


# --- builders --------------------------------------------------------------------------


def bert(tokenizer_or_vocab_size, preset: str = "nano", *, attn: str | None = None,
         head: str | None = "mlm", **overrides):
    """A randomly initialised BERT (Devlin et al. 2019) of a named size.

    Inputs: a tokenizer (sets ``vocab_size`` and ``pad_token_id``) or a vocabulary size;
    ``preset`` in ``PRESETS``; ``attn`` "sdpa" | "eager"; ``head``:
    ``"mlm"`` -> ``BertForMaskedLM``, ``"pretraining"`` -> ``BertForPreTraining`` (MLM +
    the two-way NSP / SOP head), ``None`` -> ``BertModel`` (encoder only),
    ``"classification"`` -> ``BertForSequenceClassification`` (``num_labels=2`` unless
    given). Overrides: ``n_layer, n_head, d_model, d_ff, max_len, dropout`` or any
    ``BertConfig`` field.
    """
    import transformers as tf

    heads = {
        "mlm": tf.BertForMaskedLM,
        "pretraining": tf.BertForPreTraining,
        None: tf.BertModel,
        "classification": tf.BertForSequenceClassification,
    }
    if head not in heads:
        raise ValueError(
            f"unknown head {head!r} for bert; use 'mlm', 'pretraining', 'classification' or None"
        )
    vocab_size, ids = _vocab(tokenizer_or_vocab_size)
    kwargs, size, attn = _resolve("bert", tf.BertConfig, preset, attn, overrides)
    if head == "classification":
        kwargs.setdefault("num_labels", 2)
    kwargs.setdefault("pad_token_id", ids.get("pad", 0))
    config = tf.BertConfig(vocab_size=vocab_size, **kwargs)
    return _finish(heads[head](config), preset, size)


def gpt(tokenizer_or_vocab_size, preset: str = "nano", *, attn: str | None = None, **overrides):
    """A randomly initialised GPT-2 language model (Radford et al. 2019), ``GPT2LMHeadModel``.

    Inputs: a tokenizer or vocabulary size, ``preset``, ``attn``, overrides (common names or
    ``GPT2Config`` fields). bos/eos/pad ids are set inside the tiny vocabulary from the
    tokenizer (GPT-2's defaults, 50256, would be out of range); pad is the tokenizer's
    [PAD], never EOS, so real EOS labels keep counting in the loss. The activation is
    GPT-2's tanh-approximate GELU computed by one fused kernel (``gelu_pytorch_tanh``).
    Train it with ``labels=input_ids``: the model shifts them by one itself.
    """
    import transformers as tf

    vocab_size, ids = _vocab(tokenizer_or_vocab_size)
    kwargs, size, attn = _resolve("gpt2", tf.GPT2Config, preset, attn, overrides)
    eos = ids.get("eos")
    bos = ids.get("bos", eos)
    kwargs.setdefault("bos_token_id", bos)
    kwargs.setdefault("eos_token_id", eos)
    kwargs.setdefault("pad_token_id", ids.get("pad"))
    # GPT-2's tanh GELU as one fused kernel; transformers' default "gelu_new" computes the
    # same function in 8 separate operations, a third of a tiny model's CPU time.
    kwargs.setdefault("activation_function", "gelu_pytorch_tanh")
    config = tf.GPT2Config(vocab_size=vocab_size, **kwargs)
    model = tf.GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # its class name hides it; transformers warns otherwise
    return _finish(model, preset, size)


def bart(tokenizer_or_vocab_size, preset: str = "nano", *, attn: str | None = None, **overrides):
    """A randomly initialised BART (Lewis et al. 2020), ``BartForConditionalGeneration``.

    ``n_layer`` sets the depth of the encoder and of the decoder each (BART-base: 6 + 6).
    pad / bos / eos ids come from the tokenizer; ``decoder_start_token_id`` is EOS as in
    BART and fairseq (the decoder input is the target shifted right behind EOS), and
    ``forced_eos_token_id`` is EOS. Pass ``labels=`` and the model builds
    ``decoder_input_ids`` itself.
    """
    import transformers as tf

    vocab_size, ids = _vocab(tokenizer_or_vocab_size)
    kwargs, size, attn = _resolve("bart", tf.BartConfig, preset, attn, overrides)
    eos = ids.get("eos", ids.get("sep"))
    kwargs.setdefault("pad_token_id", ids.get("pad", 0))
    kwargs.setdefault("bos_token_id", ids.get("bos", ids.get("cls")))
    kwargs.setdefault("eos_token_id", eos)
    kwargs.setdefault("decoder_start_token_id", eos)
    kwargs.setdefault("forced_eos_token_id", eos)
    config = tf.BartConfig(vocab_size=vocab_size, **kwargs)
    return _finish(tf.BartForConditionalGeneration(config), preset, size)


def electra(tokenizer_or_vocab_size, preset: str = "nano", *, attn: str | None = None,
            head: str | None = "discriminator", **overrides):
    """A randomly initialised ELECTRA (Clark et al. 2020) of a named size.

    ``head``: ``"discriminator"`` -> ``ElectraForPreTraining`` (one replaced/original logit per
    token), ``"generator"`` -> ``ElectraForMaskedLM`` (the small masked LM that proposes the
    replacements; the paper makes it 1/4 to 1/2 the discriminator's width, e.g.
    ``d_model=32, n_head=1`` against a nano discriminator), ``None`` -> ``ElectraModel``.
    ``d_model`` sets both the hidden and the embedding size (override ``embedding_size`` to
    untie them). Overrides as for ``bert``.
    """
    import transformers as tf

    heads = {"discriminator": tf.ElectraForPreTraining, "generator": tf.ElectraForMaskedLM, None: tf.ElectraModel}
    if head not in heads:
        raise ValueError(f"unknown head {head!r} for electra; use 'discriminator', 'generator' or None")
    vocab_size, ids = _vocab(tokenizer_or_vocab_size)
    kwargs, size, attn = _resolve("electra", tf.ElectraConfig, preset, attn, overrides)
    kwargs.setdefault("pad_token_id", ids.get("pad", 0))
    config = tf.ElectraConfig(vocab_size=vocab_size, **kwargs)
    return _finish(heads[head](config), preset, size)


# --- multimodal builders (chapter 07) ------------------------------------------------------

_FIELDS["clip_text"] = {
    "n_layer": ("num_hidden_layers",),
    "n_head": ("num_attention_heads",),
    "d_model": ("hidden_size",),
    "d_ff": ("intermediate_size",),
    "max_len": ("max_position_embeddings",),
    "dropout": ("attention_dropout",),  # CLIP's only dropout
}
_FIELDS["clip_vision"] = {k: v for k, v in _FIELDS["clip_text"].items() if k != "max_len"}
_FIELDS["vit_mae"] = {
    "n_layer": ("num_hidden_layers",),
    "n_head": ("num_attention_heads", "decoder_num_attention_heads"),
    "d_model": ("hidden_size", "decoder_hidden_size"),
    "d_ff": ("intermediate_size", "decoder_intermediate_size"),
    "dropout": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
}


def _check_image_geometry(image_size, patch_size, num_channels) -> None:
    for name, v in (("image_size", image_size), ("patch_size", patch_size), ("num_channels", num_channels)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    if image_size % patch_size:
        raise ValueError(
            f"image_size={image_size} is not divisible by patch_size={patch_size}; pick a patch size "
            f"that divides it (e.g. {', '.join(str(p) for p in range(2, image_size) if image_size % p == 0)[:20]})"
        )


def clip(tokenizer_or_vocab_size, preset: str = "nano", *, image_size: int = 32, patch_size: int = 8,
         num_channels: int = 3, projection_dim: int | None = None, attn: str | None = None, **overrides):
    """A randomly initialised CLIP (Radford et al. 2021), ``CLIPModel``: a ViT image tower and a
    causal text tower of the same preset, each projected to ``projection_dim`` (default d_model).

    The text tower pools the hidden state at the *first* ``eos_token_id`` of each caption, so
    eos is set to the tokenizer's [EOS] (an integer vocabulary uses the course's EOS id, 6):
    CLIP's default, 49407, lies outside a tiny vocabulary, and the tower would then silently pool
    position 0, i.e. the first token alone. Every caption must end with that id
    (``multimodal.tokenize_captions`` appends it). ``logit_scale`` starts at ln(1/0.07).
    Overrides: the common names (``dropout`` is CLIP's attention dropout; CLIP has no other).
    Images: (B, num_channels, image_size, image_size).
    """
    import transformers as tf

    _check_image_geometry(image_size, patch_size, num_channels)
    unknown = sorted(set(overrides) - set(_COMMON))
    if unknown:
        raise ValueError(
            f"unknown override {unknown[0]!r} for clip; use one of {', '.join(_COMMON)}, or image_size, "
            "patch_size, num_channels, projection_dim"
        )
    vocab_size, ids = _vocab(tokenizer_or_vocab_size)
    if "eos" not in ids:
        raise ValueError(
            f"clip needs an [EOS] id inside the vocabulary (its text tower pools at the first EOS); "
            f"vocab_size={vocab_size} has none: use a tokenizer from ssledu.data.tokenize or vocab_size >= 7"
        )
    text_kw, size, attn = _resolve("clip_text", tf.CLIPTextConfig, preset, attn, overrides)
    vision_kw, _, _ = _resolve("clip_vision", tf.CLIPVisionConfig, preset, attn, overrides)
    text_kw.pop("attn_implementation"), vision_kw.pop("attn_implementation")
    proj = size["d_model"] if projection_dim is None else projection_dim
    if isinstance(proj, bool) or not isinstance(proj, int) or proj < 1:
        raise ValueError(f"projection_dim must be a positive integer; got {projection_dim!r}")
    text = dict(text_kw, vocab_size=vocab_size, projection_dim=proj, eos_token_id=ids["eos"],
                bos_token_id=ids.get("bos", ids["eos"]), pad_token_id=ids.get("pad", 0))
    vision = dict(vision_kw, image_size=image_size, patch_size=patch_size, num_channels=num_channels,
                  projection_dim=proj)
    # ln(1/0.07) exactly: transformers' default, 2.6592, is the value rounded to 4 decimals
    config = tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj,
                           logit_scale_init_value=math.log(1 / 0.07))
    config._attn_implementation = attn
    model = tf.CLIPModel(config)
    model.config.ssledu_preset = preset if _is_preset(preset, size) else f"{preset}*"
    return model


def vit_mae(preset: str = "nano", *, image_size: int = 32, patch_size: int = 4, num_channels: int = 3,
            mask_ratio: float = 0.75, norm_pix_loss: bool = False, attn: str | None = None, **overrides):
    """A randomly initialised masked autoencoder (He et al. 2022), ``ViTMAEForPreTraining``.

    The fixed 2-d sin-cos position embeddings are set here (transformers leaves them at zero
    for a model built from a config). The encoder has the preset's size; the decoder the same width and heads but one layer
    (``decoder_num_hidden_layers``; the paper's decoder is also much lighter than its
    encoder). ``mask_ratio`` 0.75 as in the paper. The model masks at inference too: for
    frozen features build the encoder with ``model.vit.config.mask_ratio = 0.0`` or use
    ``multimodal.mae_features``. Images: (B, num_channels, image_size, image_size).
    Overrides: common names (not ``max_len``: the patch count sets the length) or any
    ``ViTMAEConfig`` field.
    """
    import transformers as tf

    _check_image_geometry(image_size, patch_size, num_channels)
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio!r} (the MAE paper uses 0.75)")
    if "max_len" in overrides:
        raise ValueError("vit_mae has no max_len: its length is (image_size // patch_size) ** 2 patches")
    kwargs, size, attn = _resolve("vit_mae", tf.ViTMAEConfig, preset, attn, overrides)
    kwargs.setdefault("decoder_num_hidden_layers", 1)
    config = tf.ViTMAEConfig(image_size=image_size, patch_size=patch_size, num_channels=num_channels,
                             mask_ratio=float(mask_ratio), norm_pix_loss=bool(norm_pix_loss), **kwargs)
    model = tf.ViTMAEForPreTraining(config)
    _init_mae_positions(model)
    return _finish(model, preset, size)


def _init_mae_positions(model) -> None:
    # transformers 5.2x leaves the fixed sin-cos position embeddings of a ViTMAE built from a
    # config at zero (its _init_weights zeros the decoder's and skips the encoder's), and they
    # are frozen: the model then cannot tell one patch from another and learns only the mean
    # image. Set them, and the mask and class tokens, as MAE's own code does (normal, std 0.02).
    emb = model.vit.embeddings
    emb.patch_embeddings.projection._is_hf_initialized = False  # else initialize_weights returns early
    emb.initialize_weights()
    model.decoder.initialize_weights(emb.patch_embeddings.num_patches)


# --- inspecting models -----------------------------------------------------------------


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of parameters of ``model`` (tied weights counted once)."""
    if not hasattr(model, "parameters"):
        raise TypeError(f"count_parameters needs a torch model; got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(model) -> str:
    """One line: class, preset, depth x heads, width, parameters, attention implementation.

    e.g. ``"BertForMaskedLM nano: 2 layers x 2 heads, d=64, 0.12M params, sdpa"``;
    encoder-decoders show ``"2+2 layers"``.
    """
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise TypeError(
            f"describe needs a transformers model (with .config), e.g. from models.bert(...); got "
            f"{type(model).__name__}. For any torch model use count_parameters(model)"
        )

    def get(*names):  # the first of a config's names for the same quantity
        return next((getattr(cfg, n) for n in names if getattr(cfg, n, None)), None)

    towers = [(n, getattr(cfg, f"{n}_config", None)) for n in ("text", "vision")]
    if all(t is not None for _, t in towers):  # CLIP: one line per tower
        n = count_parameters(model, trainable_only=False)
        parts = [f"{n_} {t.num_hidden_layers} layers x {t.num_attention_heads} heads, d={t.hidden_size}"
                 for n_, t in towers]
        preset = getattr(cfg, "ssledu_preset", None)
        name = type(model).__name__ + (f" {preset}" if preset else "")
        return f"{name}: {'; '.join(parts)}, {n / 1e6:.2f}M params"
    if getattr(cfg, "is_encoder_decoder", False) and hasattr(cfg, "encoder_layers"):
        layers = f"{cfg.encoder_layers}+{cfg.decoder_layers}"
    else:
        layers = str(get("num_hidden_layers", "n_layer", "num_layers"))
    heads = get("num_attention_heads", "n_head", "encoder_attention_heads", "num_heads")
    width = get("hidden_size", "n_embd", "d_model")
    preset = getattr(cfg, "ssledu_preset", None)
    name = type(model).__name__ + (f" {preset}" if preset else "")
    n = count_parameters(model, trainable_only=False)
    attn = getattr(cfg, "_attn_implementation", None) or "default"
    return f"{name}: {layers} layers x {heads} heads, d={width}, {n / 1e6:.2f}M params, {attn}"
