"""CLIP's loss, tokenisation, zero-shot and retrieval; MAE's patches, masking and loss.

References: transformers' CLIPModel(return_loss=True) and ViTMAEForPreTraining, and
brute-force loops.
"""

import math

import pytest
import torch

from ssledu import models
from ssledu.data.tokenize import train_tokenizer
from ssledu.objectives import multimodal as mm

CAPTIONS = ["a big red circle", "a small blue square", "a big blue star", "a small red triangle",
            "a medium green diamond"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CAPTIONS + ["a {} shape", "shape"], kind="word")


@pytest.fixture(scope="module")
def clip_model(tok):
    torch.manual_seed(0)
    return models.clip(tok, "nano", d_model=32, n_head=2).eval()


# ------------------------------------------------------------------------------ CLIP


def _brute_force(img, txt, s):
    img = img / img.norm(dim=1, keepdim=True)
    txt = txt / txt.norm(dim=1, keepdim=True)
    n, total = len(img), 0.0
    scale = math.exp(s)
    for i in range(n):  # image i against every caption, then caption i against every image
        row = [scale * float(img[i] @ txt[j]) for j in range(n)]
        col = [scale * float(txt[i] @ img[j]) for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


@pytest.mark.parametrize("n,s", [(1, 2.0), (3, mm.LOGIT_SCALE_INIT), (6, 0.5)])
def test_clip_loss_equals_brute_force(n, s):
    g = torch.Generator().manual_seed(n)
    img, txt = torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g, dtype=torch.float64)
    assert float(mm.clip_loss(img, txt, s)) == pytest.approx(_brute_force(img, txt, s), rel=1e-10)


def test_clip_loss_is_not_one_direction():
    # a loss with only the image -> text term differs from the symmetric one on a skewed batch
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    logits = mm.clip_logits(img, txt, 1.0)
    one_way = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    assert not torch.isclose(mm.clip_loss(img, txt, 1.0), one_way)


def test_clip_loss_equals_transformers(clip_model, tok):
    batch = mm.tokenize_captions(tok, CAPTIONS)
    images = torch.rand(len(CAPTIONS), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clip_model.logit_scale.fill_(1.7)  # not the initial value: the scale must be read, not assumed
        out = clip_model(pixel_values=images, return_loss=True, **batch)
        ours = mm.clip_loss(out.image_embeds, out.text_embeds, clip_model.logit_scale)
        clip_model.logit_scale.fill_(mm.LOGIT_SCALE_INIT)
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-6)
    # our normalised features are the model's
    torch.testing.assert_close(mm.image_features(clip_model, images), out.image_embeds, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mm.text_features(clip_model, **batch), out.text_embeds, rtol=1e-5, atol=1e-6)


def test_clip_loss_starts_near_ln_n_and_falls(tok):
    torch.manual_seed(0)
    model = models.clip(tok, "nano", d_model=32, n_head=2, dropout=0.0)
    batch = mm.tokenize_captions(tok, CAPTIONS)
    images = torch.rand(len(CAPTIONS), 3, 32, 32, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(pixel_values=images, **batch)
        loss = mm.clip_loss(out.image_embeds, out.text_embeds, model.logit_scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mm.clamp_logit_scale_(model)
        losses.append(loss.item())
    assert abs(losses[0] - math.log(len(CAPTIONS))) < 0.3
    assert losses[-1] < losses[0] - 0.3


def test_logit_scale_init_and_clamp(tok):
    model = models.clip(tok, "nano")
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(7.0)
    assert mm.clamp_logit_scale_(model) == pytest.approx(math.log(100))
    assert model.logit_scale.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        model.logit_scale.fill_(1.0)
    assert mm.clamp_logit_scale_(model.logit_scale) == pytest.approx(1.0)  # below the cap: untouched


def test_tokenize_captions_ends_every_row_with_eos(tok):
    batch = mm.tokenize_captions(tok, ["a big red circle", "shape"])
    ids, am = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (2, 5) and am.tolist() == [[1] * 5, [1, 1, 0, 0, 0]]
    assert ids[0, 4] == tok.eos_token_id and ids[1, 1] == tok.eos_token_id
    assert ids[1, 2:].tolist() == [tok.pad_token_id] * 3
    with pytest.raises(ValueError, match="max_length=3"):
        mm.tokenize_captions(tok, ["a big red circle"], max_length=3)


def test_text_pooling_reads_the_eos_position(tok, clip_model):
    """CLIP's text tower pools at the first EOS. With the builder's eos (the tokenizer's), a word
    before EOS changes the feature and so does where EOS stands; with CLIP's default eos id 49407
    (outside the tiny vocabulary) the tower pools position 0 and neither would change it."""
    assert clip_model.config.text_config.eos_token_id == tok.eos_token_id
    a = mm.tokenize_captions(tok, ["a big red circle"])
    b = mm.tokenize_captions(tok, ["a big blue circle"])  # differs at position 2 only
    fa, fb = mm.text_features(clip_model, **a), mm.text_features(clip_model, **b)
    assert not torch.allclose(fa, fb, atol=1e-4)
    # the same ids with EOS one place earlier (the last word replaced by padding after it)
    ids = a["input_ids"].clone()
    ids[0, 3], ids[0, 4] = tok.eos_token_id, tok.pad_token_id
    moved = mm.text_features(clip_model, ids)
    assert not torch.allclose(fa, moved, atol=1e-4)


def test_check_caption_ids_rejects_out_of_vocabulary_and_missing_eos(tok, clip_model):
    v = len(tok)
    with pytest.raises(ValueError, match=f"outside the vocabulary of {v}"):
        mm.text_features(clip_model, torch.tensor([[7, v + 3, tok.eos_token_id]]))
    with pytest.raises(ValueError, match="no EOS"):
        mm.text_features(clip_model, torch.tensor([[7, 8, 9]]))


def test_zero_shot_classifier_is_mean_of_normalised_templates(tok, clip_model):
    templates = ["a {} shape", "a big {}"]
    w = mm.zero_shot_classifier(clip_model, tok, ["circle", "square"], templates)
    assert w.shape == (2, clip_model.config.projection_dim)
    for c, name in enumerate(["circle", "square"]):
        feats = [mm.text_features(clip_model, **mm.tokenize_captions(tok, [t.format(name)])) for t in templates]
        expected = torch.nn.functional.normalize(torch.cat(feats).mean(0), dim=0)
        torch.testing.assert_close(w[c], expected)
    img = torch.stack([w[1], w[0], w[1]])  # images that look exactly like the class vectors
    assert mm.zero_shot_predict(img, w).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="holding"):
        mm.zero_shot_classifier(clip_model, tok, ["circle"], ["a circle"])


def test_recall_at_k_by_hand():
    # 3 pairs in 2-d: image 0 nearest caption 0; image 1 nearest caption 2; image 2 nearest caption 1
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    r = mm.recall_at_k(img, txt, ks=(1, 2))
    assert r["image_to_text@1"] == pytest.approx(1 / 3)
    assert r["text_to_image@1"] == pytest.approx(1 / 3)
    # image 1: captions 2 (cos 1), 1 (.8) -> hit at 2; image 2: captions 1 (1), 2 (.8) -> hit at 2
    assert r["image_to_text@2"] == pytest.approx(1.0)
    # groups: pairs 1 and 2 share a caption, so either counts
    assert mm.recall_at_k(img, txt, ks=(1,), groups=[0, 1, 1])["image_to_text@1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1..N = 3"):
        mm.recall_at_k(img, txt, ks=(4,))


# ------------------------------------------------------------------------------- MAE


@pytest.fixture(scope="module")
def mae():
    torch.manual_seed(0)
    return models.vit_mae("nano", image_size=16, patch_size=4, num_channels=3, d_model=32).eval()


def test_patchify_equals_transformers_and_inverts(mae):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = mm.patchify(x, 4)
    assert torch.equal(ours, mae.patchify(x))
    assert torch.equal(mm.unpatchify(ours, 4, 16, 3), x)
    assert torch.equal(mae.unpatchify(ours), x)
    # patch 1 is the top row's second 4 x 4 block, values row, column, channel
    assert torch.equal(ours[0, 1], x[0, :, 0:4, 4:8].permute(1, 2, 0).reshape(-1))


@pytest.mark.parametrize("ratio", [0.25, 0.75, 0.9])
def test_masking_equals_transformers_with_the_same_noise(mae, ratio):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 16, 16, generator=g)
    noise = mm.mask_noise(3, 16, generator=g)
    mae.config.mask_ratio = ratio
    try:
        out = mae(pixel_values=x, noise=noise)
    finally:
        mae.config.mask_ratio = 0.75
    seq = torch.arange(3 * 16 * 2, dtype=torch.float32).reshape(3, 16, 2)
    kept, mask, ids_restore = mm.random_masking(seq, noise, ratio)
    assert torch.equal(mask, out.mask)
    assert torch.equal(ids_restore, out.ids_restore)
    assert int(mask[0].sum()) == 16 - int(16 * (1 - ratio))
    # the kept patches are those with the smallest noise, in increasing noise order
    order = noise.argsort(1)[:, : kept.shape[1]]
    assert torch.equal(kept, torch.gather(seq, 1, order[..., None].expand(-1, -1, 2)))


def test_same_seed_same_mask():
    a = mm.mask_noise(2, 64, generator=torch.Generator().manual_seed(5))
    b = mm.mask_noise(2, 64, generator=torch.Generator().manual_seed(5))
    seq = torch.zeros(2, 64, 1)
    assert torch.equal(mm.random_masking(seq, a)[1], mm.random_masking(seq, b)[1])


@pytest.mark.parametrize("norm", [False, True])
def test_mae_loss_equals_transformers(norm):
    torch.manual_seed(0)
    model = models.vit_mae("nano", image_size=16, patch_size=4, d_model=32, norm_pix_loss=norm).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 16, 16, generator=g)
    noise = mm.mask_noise(2, 16, generator=g)
    with torch.no_grad():
        out = model(pixel_values=x, noise=noise)
    ours = mm.mae_loss(x, out.logits, out.mask, 4, norm_pix_loss=norm)
    torch.testing.assert_close(ours, out.loss, rtol=1e-6, atol=1e-7)
    # and it counts the masked patches only: the visible ones may be anything
    logits = out.logits.clone()
    logits[out.mask == 0] = 100.0
    torch.testing.assert_close(mm.mae_loss(x, logits, out.mask, 4, norm_pix_loss=norm), out.loss, rtol=1e-6, atol=1e-7)


def test_mae_loss_by_hand():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = 1.0  # patch 0 all ones, the others zero
    pred = torch.zeros(1, 4, 4)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert float(mm.mae_loss(x, pred, mask, 2)) == pytest.approx(0.5)  # (1 + 0) / 2 masked patches
    # normalised targets: a constant patch becomes 0, so zero prediction is exact there
    assert float(mm.mae_loss(x, pred, mask, 2, norm_pix_loss=True)) == pytest.approx(0.0)


def test_mae_features_see_every_patch_and_draw_no_randomness(mae):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    f1 = mm.mae_features(mae, x)
    state = torch.random.get_rng_state()
    f2 = mm.mae_features(mae, x)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(f1, f2) and f1.shape == (2, 32)
    assert mae.config.mask_ratio == 0.75  # restored
    # reference: every patch through the encoder in its own order, mean over patch tokens
    with torch.no_grad():
        mae.config.mask_ratio = 0.0
        h = mae.vit(pixel_values=x, noise=torch.arange(16.0).expand(2, 16)).last_hidden_state
        mae.config.mask_ratio = 0.75
    torch.testing.assert_close(f1, h[:, 1:].mean(1))


def test_masked_images_paint_the_removed_patches():
    x = torch.rand(1, 3, 8, 8)
    mask = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    y = mm.masked_images(x, mask, 4, fill=0.0)
    assert torch.equal(y[..., :4, :4], x[..., :4, :4]) and torch.all(y[..., :4, 4:] == 0)


@pytest.mark.parametrize("call,match", [
    (lambda: mm.patchify(torch.rand(1, 3, 10, 10), 4), "do not divide into 4 x 4"),
    (lambda: mm.random_masking(torch.rand(1, 4, 2), torch.rand(1, 4), 1.0), r"mask_ratio must be in \(0, 1\)"),
    (lambda: mm.random_masking(torch.rand(1, 4, 2), torch.rand(1, 4), 0.0), r"mask_ratio must be in \(0, 1\)"),
    (lambda: mm.random_masking(torch.rand(1, 4, 2), torch.rand(1, 5), 0.5), "noise must have shape"),
    (lambda: mm.clip_loss(torch.rand(3, 4), torch.rand(2, 4), 1.0), "same shape"),
    (lambda: models.vit_mae("nano", image_size=30, patch_size=4), "not divisible by patch_size=4"),
])
def test_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
