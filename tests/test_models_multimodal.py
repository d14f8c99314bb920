"""models.clip and models.vit_mae: presets, special ids, geometry, and what they return."""

import math

import pytest
import torch
import transformers as tf

from ssledu import models
from ssledu.data.tokenize import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["a big red circle", "a small blue square"], kind="word")


def test_clip_nano_sizes_and_ids(tok):
    m = models.clip(tok, "nano")
    assert isinstance(m, tf.CLIPModel)
    t, v = m.config.text_config, m.config.vision_config
    assert (t.num_hidden_layers, t.num_attention_heads, t.hidden_size, t.intermediate_size) == (2, 2, 64, 256)
    assert (v.num_hidden_layers, v.hidden_size, v.image_size, v.patch_size, v.num_channels) == (2, 64, 32, 8, 3)
    assert t.vocab_size == len(tok) and t.max_position_embeddings == 128
    # CLIP's defaults (49407 / 49406) would lie outside the tiny vocabulary
    assert (t.eos_token_id, t.pad_token_id, t.bos_token_id) == (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id)
    assert m.config.projection_dim == 64 and m.text_projection.out_features == 64
    assert m.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    assert m.config.ssledu_preset == "nano"


def test_clip_overrides_and_integer_vocab():
    m = models.clip(40, "tiny", n_layer=1, d_model=32, n_head=2, image_size=8, patch_size=2, num_channels=1,
                    projection_dim=16, dropout=0.0)
    t, v = m.config.text_config, m.config.vision_config
    assert (t.num_hidden_layers, t.hidden_size, v.hidden_size, t.eos_token_id) == (1, 32, 32, 6)
    assert (v.image_size, v.patch_size, v.num_channels, m.config.projection_dim) == (8, 2, 1, 16)
    assert t.attention_dropout == 0.0 and m.config.ssledu_preset == "tiny*"
    out = m(input_ids=torch.tensor([[7, 8, 6]]), pixel_values=torch.rand(1, 1, 8, 8))
    assert out.image_embeds.shape == (1, 16)


def test_clip_unknown_override(tok):
    with pytest.raises(ValueError, match="unknown override 'hidden_act'"):
        models.clip(tok, "nano", hidden_act="relu")


def test_vit_mae_nano():
    m = models.vit_mae("nano", image_size=8, patch_size=2, num_channels=1)
    c = m.config
    assert isinstance(m, tf.ViTMAEForPreTraining)
    assert (c.num_hidden_layers, c.hidden_size, c.decoder_hidden_size, c.decoder_num_hidden_layers) == (2, 64, 64, 1)
    assert (c.mask_ratio, c.norm_pix_loss, c.num_channels) == (0.75, False, 1)
    out = m(pixel_values=torch.rand(3, 1, 8, 8))
    assert out.logits.shape == (3, 16, 4) and out.mask.sum(1).tolist() == [12.0] * 3
    assert models.describe(m) == "ViTMAEForPreTraining nano: 2 layers x 2 heads, d=64, " \
        f"{models.count_parameters(m, False) / 1e6:.2f}M params, sdpa"


def test_vit_mae_native_override_and_errors():
    m = models.vit_mae("nano", decoder_num_hidden_layers=2, norm_pix_loss=True, mask_ratio=0.5)
    assert (m.config.decoder_num_hidden_layers, m.config.norm_pix_loss, m.config.mask_ratio) == (2, True, 0.5)
    with pytest.raises(ValueError, match="no max_len"):
        models.vit_mae("nano", max_len=64)
    with pytest.raises(ValueError, match="not divisible by patch_size=3"):
        models.vit_mae("nano", image_size=32, patch_size=3)


def test_vit_mae_position_embeddings_are_set_and_frozen():
    """Built from a config, transformers leaves both sin-cos tables at zero: every patch looks
    the same to the model, and its MAE learns only the mean image."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    m = models.vit_mae("nano", image_size=8, patch_size=2, num_channels=1)
    enc, dec = m.vit.embeddings.position_embeddings, m.decoder.decoder_pos_embed
    assert not enc.requires_grad and not dec.requires_grad
    ref = build_2d_sinusoidal_position_embedding(height=4, width=4, embed_dim=64, cls_token=True)
    ref = torch.cat([ref[..., 32:], ref[..., :32]], dim=-1)  # transformers' pretrained layout
    torch.testing.assert_close(enc[0], ref)
    torch.testing.assert_close(dec[0], ref)
    assert m.decoder.mask_token.abs().max() > 0 and m.vit.embeddings.cls_token.abs().max() > 0
    # every patch position is told apart
    assert len({tuple(r.tolist()) for r in enc[0, 1:].round(decimals=4)}) == 16


def test_vit_mae_learns_more_than_the_mean_image():
    torch.manual_seed(0)
    m = models.vit_mae("nano", image_size=8, patch_size=2, num_channels=1, mask_ratio=0.5, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(32, 1, 8, 8, generator=g) > 0.7).float()
    x[:16, :, :, :4] = 0.0  # half the images dark on the left, half anywhere
    noise = torch.rand(32, 16, generator=g)
    mean_only = ((x - x.mean(0)) ** 2).mean().item()  # the loss of predicting the mean image
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(150):
        out = m(pixel_values=x, noise=noise)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.7 * mean_only


def test_describe_names_both_clip_towers(tok):
    model = models.clip(tok, "nano", n_layer=1)
    model.config.vision_config.num_hidden_layers = 3  # the towers are read separately
    line = models.describe(model)
    assert "None" not in line
    assert "text 1 layers x 2 heads, d=64; vision 3 layers x 2 heads, d=64" in line
