"""Tests for ssledu.viz: every figure must contain the data it was given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ssledu import viz  # noqa: E402


@pytest.fixture(autouse=True)
def no_figure_leaks():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a viz function left a figure open in pyplot"


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def _tick_texts(labels):
    return [t.get_text() for t in labels]


class FakeHistory:
    """The shape of ssledu.train.History that loss_curves relies on."""

    def __init__(self, steps, evals):
        self.steps = steps
        self.evals = evals


# --------------------------------------------------------------------------- loss curves


def test_loss_curves_list_of_floats():
    losses = [4.2, 3.1, 2.5, 2.4]
    fig = viz.loss_curves(losses, title="t")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    line = _lines(ax)["train"]
    np.testing.assert_array_equal(line.get_ydata(), losses)
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
    assert ax.get_ylabel() == "loss (nats/token)" and ax.get_xlabel() == "step"
    assert ax.get_title() == "t"


def test_loss_curves_history_dict_and_floors():
    h1 = FakeHistory(
        steps=[{"step": s, "loss": 5.0 - s / 10, "lr": 1e-3} for s in (10, 20, 30)],
        evals=[{"step": 20, "val_loss": 3.5, "wall_s": 1.0}, {"step": 30, "val_loss": 3.0, "wall_s": 2.0}],
    )
    h2 = FakeHistory(steps=[{"step": s, "loss": 6.0 - s / 10} for s in (10, 20)], evals=[])
    fig = viz.loss_curves({"bert": h1, "gpt": h2}, floor={"Bayes floor": 1.25, "unigram": 4.0})
    ax = fig.axes[0]
    lines = _lines(ax)
    np.testing.assert_array_equal(lines["bert (train)"].get_ydata(), [4.0, 3.0, 2.0])
    np.testing.assert_array_equal(lines["bert (train)"].get_xdata(), [10, 20, 30])
    val = lines["bert (validation)"]
    np.testing.assert_array_equal(val.get_xdata(), [20, 30])
    np.testing.assert_array_equal(val.get_ydata(), [3.5, 3.0])
    assert val.get_linestyle() == "--" and val.get_marker() == "o"
    assert lines["bert (train)"].get_linestyle() == "-"
    assert lines["bert (train)"].get_color() == val.get_color()  # one colour per run
    assert lines["gpt (train)"].get_color() != val.get_color()
    assert "gpt (validation)" not in lines
    np.testing.assert_allclose(lines["Bayes floor"].get_ydata(), [1.25, 1.25])
    np.testing.assert_allclose(lines["unigram"].get_ydata(), [4.0, 4.0])
    legend = _tick_texts(ax.get_legend().get_texts())
    assert "Bayes floor" in legend and "bert (validation)" in legend


def test_loss_curves_dataframe_series_and_single_floor():
    # the layout of History.to_frame(): evaluations merged on step
    df = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "val_loss": [np.nan, 2.2, np.nan]})
    fig = viz.loss_curves(df, floor=1.1, floor_label="exact NLL", log_y=True)
    ax = fig.axes[0]
    lines = _lines(ax)
    np.testing.assert_array_equal(lines["train"].get_ydata(), [3.0, 2.0, 1.5])
    np.testing.assert_array_equal(lines["validation"].get_xdata(), [2])
    np.testing.assert_allclose(lines["exact NLL"].get_ydata(), [1.1, 1.1])
    assert ax.get_yscale() == "log"
    series = pd.Series([2.0, 1.0], index=[100, 200])
    line = _lines(viz.loss_curves(series).axes[0])["train"]
    np.testing.assert_array_equal(line.get_xdata(), [100, 200])
    default_floor = _lines(viz.loss_curves([1.0, 0.9], floor=0.5).axes[0])
    assert "floor = 0.500" in default_floor


def test_loss_curves_accepts_to_frame_objects():
    class FrameHistory:
        def to_frame(self):
            return pd.DataFrame({"step": [5, 6], "loss": [1.0, 0.5]})

    line = _lines(viz.loss_curves(FrameHistory()).axes[0])["train"]
    np.testing.assert_array_equal(line.get_xdata(), [5, 6])


def test_loss_curves_errors():
    with pytest.raises(ValueError, match="1-D"):
        viz.loss_curves(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="positive"):
        viz.loss_curves([1.0, 0.0], log_y=True)
    with pytest.raises(ValueError, match="no losses"):
        viz.loss_curves({"empty": []})
    with pytest.raises(ValueError, match="no loss column"):
        viz.loss_curves(pd.DataFrame({"step": [1], "acc": [0.5]}))


# --------------------------------------------------------------------------- attention


@pytest.fixture(scope="module")
def bert_attentions():
    """Real attentions from a tiny random BERT (eager attention, eval mode)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=20, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=32, max_position_embeddings=16, attn_implementation="eager",
    )
    model = BertModel(cfg).eval()
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 11, 12, 3]])
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 5, 5)
    return out.attentions


TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]"]


def test_attention_grid_transformers_tuple(bert_attentions):
    fig = viz.attention_grid(bert_attentions, TOKENS)
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 2 * 4
    for ax in panels:
        layer, head = (int(s[1:]) for s in ax.get_title().split())
        expected = bert_attentions[layer][0, head].numpy()  # batch element 0
        np.testing.assert_allclose(ax.images[0].get_array(), expected, rtol=1e-6)
    assert _tick_texts(panels[0].get_yticklabels()) == TOKENS
    assert any(ax.get_ylabel() == "attention weight" for ax in fig.axes)  # colourbar


def test_attention_grid_single_map_has_token_labels(bert_attentions):
    fig = viz.attention_grid(bert_attentions, TOKENS, layer=-1, head=2)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), bert_attentions[1][0, 2].numpy(), rtol=1e-6)
    assert _tick_texts(ax.get_xticklabels()) == TOKENS
    assert _tick_texts(ax.get_yticklabels()) == TOKENS
    assert "query" in ax.get_ylabel() and "key" in ax.get_xlabel()
    assert ax.get_title() == "attention, layer 1 head 2"
    assert len(fig.axes) == 2  # the map and its colourbar


def test_attention_grid_array_forms_and_limits():
    rng = np.random.default_rng(0)
    arr = rng.random((3, 12, 4, 4))
    fig = viz.attention_grid(arr, max_heads=8, max_layers=2)
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 2 * 8
    assert "first 8 of 12 heads" in fig.get_suptitle() and "first 2 of 3 layers" in fig.get_suptitle()
    # one head across layers
    col = viz.attention_grid(arr, head=5)
    assert [ax.get_title() for ax in col.axes if ax.images and ax.get_title()] == ["L0 H5", "L1 H5", "L2 H5"]
    # (L, L) and (H, L, L)
    one = viz.attention_grid(arr[0, 0], list("abcd"))
    np.testing.assert_array_equal(one.axes[0].images[0].get_array(), arr[0, 0])
    three = viz.attention_grid(arr[1], layer=0, head=3)
    np.testing.assert_array_equal(three.axes[0].images[0].get_array(), arr[1, 3])


def test_attention_grid_cross_attention_needs_key_tokens():
    cross = np.full((1, 1, 2, 3), 1 / 3)
    with pytest.raises(ValueError, match="square"):
        viz.attention_grid(cross, ["a", "b"])
    fig = viz.attention_grid(cross, ["a", "b"], key_tokens=["x", "y", "z"])
    assert _tick_texts(fig.axes[0].get_xticklabels()) == ["x", "y", "z"]


def test_attention_grid_errors():
    with pytest.raises(ValueError, match="square"):
        viz.attention_grid(np.ones((2, 3)))
    with pytest.raises(ValueError, match="3 tokens"):
        viz.attention_grid(np.eye(4), ["a", "b", "c"])
    with pytest.raises(ValueError, match="layer 2 is out of range"):
        viz.attention_grid(np.ones((2, 1, 3, 3)), layer=2)
    with pytest.raises(ValueError, match="not understood"):
        viz.attention_grid(np.ones(3))


# --------------------------------------------------------------------------- masks


def _prefix_reference(L, P):
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    return (j < P) | (j <= i)


def test_allowed_positions_reads_every_convention():
    L, P = 6, 2
    ref = _prefix_reference(L, P)
    as_bool = torch.tensor(ref)
    additive = torch.zeros(2, 1, L, L).masked_fill(~as_bool, torch.finfo(torch.float32).min)
    additive[1] = 0.0  # the second batch element must be ignored
    additive_inf = torch.zeros(L, L).masked_fill(~as_bool, float("-inf"))
    additive_bert = (1.0 - as_bool.float()) * -10000.0  # old BERT convention
    for mask in (as_bool, additive, additive_inf, additive_bert, as_bool.long(), as_bool.float(),
                 ref, ref.astype(np.int64), additive.to(torch.bfloat16)):
        np.testing.assert_array_equal(viz.allowed_positions(mask), ref)
    assert viz.allowed_positions(torch.zeros(L, L)).all()  # additive all-zero = bidirectional


def test_allowed_positions_errors():
    with pytest.raises(ValueError, match="padding mask"):
        viz.allowed_positions(torch.ones(5))
    with pytest.raises(ValueError, match="not understood"):
        viz.allowed_positions(torch.full((3, 3), 2.0))


def test_mask_matrix_contains_the_mask_and_labels():
    L = 5
    ref = _prefix_reference(L, 2)
    additive = torch.zeros(1, 1, L, L).masked_fill(~torch.tensor(ref), torch.finfo(torch.float16).min)
    tokens = list("abcde")
    fig = viz.mask_matrix(additive, tokens, title="prefix LM")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), ref.astype(int))
    assert _tick_texts(ax.get_yticklabels()) == tokens and _tick_texts(ax.get_xticklabels()) == tokens
    assert ax.get_title() == "prefix LM"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["may attend", "blocked"]
    with pytest.raises(ValueError, match="4 tokens"):
        viz.mask_matrix(additive, tokens[:4])


def test_mask_matrices_side_by_side():
    L = 4
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    masks = {
        "bidirectional": torch.ones(L, L, dtype=torch.bool),
        "causal": causal,
        "prefix": torch.tensor(_prefix_reference(L, 2)),
        "right-to-left": causal.T,
    }
    fig = viz.mask_matrices(masks, list("wxyz"), title="one network, four masks")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == list(masks)
    for ax, m in zip(panels, masks.values()):
        np.testing.assert_array_equal(ax.images[0].get_array(), m.numpy().astype(int))
    assert fig.get_suptitle() == "one network, four masks"
    with pytest.raises(ValueError, match="non-empty"):
        viz.mask_matrices({})


# --------------------------------------------------------------------------- token probabilities


def test_token_probability_bars_from_pairs():
    pairs = [("sat", 0.6), ("ran", 0.25), ("is", 0.1)]
    fig = viz.token_probability_bars(pairs, highlight="ran", title="after 'the cat'")
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, [0.6, 0.25, 0.1])
    assert _tick_texts(ax.get_yticklabels()) == ["sat", "ran", "is"]
    assert ax.yaxis_inverted()  # most likely on top
    colours = [p.get_facecolor() for p in ax.patches]
    assert colours[1] != colours[0] and colours[0] == colours[2]
    assert ax.get_xlabel() == "probability" and ax.get_title() == "after 'the cat'"


def test_token_probability_bars_from_logits_matches_softmax_topk():
    vocab = [f"w{i}" for i in range(50)]
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))
    probs, ids = torch.softmax(logits, -1).topk(5)
    for fig in (viz.token_probability_bars(logits, vocab, 5), viz.token_probability_bars((logits, vocab, 5))):
        ax = fig.axes[0]
        np.testing.assert_allclose([p.get_width() for p in ax.patches], probs.numpy(), rtol=1e-5)
        assert _tick_texts(ax.get_yticklabels()) == [vocab[i] for i in ids]

    class Tok:
        def convert_ids_to_tokens(self, i):
            return f"tok{i}"

    fig = viz.token_probability_bars(torch.softmax(logits, -1), Tok(), 3, from_logits=False)
    np.testing.assert_allclose([p.get_width() for p in fig.axes[0].patches], probs[:3].numpy(), rtol=1e-5)
    assert _tick_texts(fig.axes[0].get_yticklabels())[0] == f"tok{ids[0].item()}"


def test_token_probability_bars_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viz.token_probability_bars([("a", 3.2)])
    with pytest.raises(ValueError, match="1-D"):
        viz.token_probability_bars(torch.zeros(2, 10), list("abcdefghij"))
    with pytest.raises(ValueError, match="tokenizer"):
        viz.token_probability_bars(torch.zeros(10))
    with pytest.raises(ValueError, match="pairs"):
        viz.token_probability_bars([("a", 0.1, "extra")])


# --------------------------------------------------------------------------- embeddings


def _offsets(ax):
    return np.concatenate([c.get_offsets() for c in ax.collections])


def test_embedding_projection_pca_points_and_legend():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(4, 1, (15, 8))])
    labels = np.array([0] * 20 + [1] * 15)
    fig = viz.embedding_projection(torch.tensor(X), labels, label_names=["animal", "place"])
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 35
    Z = PCA(n_components=2, random_state=0).fit_transform(X)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), Z[:20], atol=1e-8)
    np.testing.assert_allclose(ax.collections[1].get_offsets(), Z[20:], atol=1e-8)
    assert _tick_texts(ax.get_legend().get_texts()) == ["animal", "place"]
    assert ax.get_xlabel().startswith("PC 1")


def test_embedding_projection_tsne_and_string_labels():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 5))
    labels = ["b", "a"] * 12
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # t-SNE's OpenMP threads crawl on a busy 2-core machine
        fig = viz.embedding_projection(X, labels, method="tsne", seed=0, max_iter=250)
    ax = fig.axes[0]
    assert len(_offsets(ax)) == 24
    assert _tick_texts(ax.get_legend().get_texts()) == ["b", "a"]  # order of appearance
    assert ax.get_xlabel() == "t-SNE 1"
    nolabel = viz.embedding_projection(X)
    assert len(_offsets(nolabel.axes[0])) == 24 and nolabel.axes[0].get_legend() is None


def test_embedding_projection_errors():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        viz.embedding_projection(np.zeros(10))
    with pytest.raises(ValueError, match="one per row"):
        viz.embedding_projection(np.zeros((10, 3)), labels=[0, 1])
    with pytest.raises(ValueError, match="'pca' or 'tsne'"):
        viz.embedding_projection(np.random.rand(10, 3), method="umap")


# --------------------------------------------------------------------------- images


def test_image_grid_greyscale_uint8_and_titles():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(10, 8, 8), dtype=np.uint8)
    fig = viz.image_grid(imgs, titles=[str(i) for i in range(10)], ncols=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 10 and len(fig.axes) == 12  # 3 x 4 grid, two empty cells
    for i, ax in enumerate(shown):
        np.testing.assert_array_equal(ax.images[0].get_array(), imgs[i])
        assert ax.get_title() == str(i)
    assert shown[0].images[0].get_cmap().name == "gray"


def test_image_grid_colour_forms():
    rng = np.random.default_rng(0)
    hwc = rng.random((3, 6, 6, 3))
    fig = viz.image_grid(hwc)
    for ax, im in zip(fig.axes, hwc):
        np.testing.assert_allclose(ax.images[0].get_array(), im)
    chw = torch.tensor(hwc).permute(0, 3, 1, 2)  # torch layout
    fig = viz.image_grid(chw)
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), hwc[1], rtol=1e-6)
    # float colour outside [0, 1] is rescaled per image for display
    fig = viz.image_grid(hwc * 10 - 5)
    got = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(got, (hwc[0] - hwc[0].min()) / (hwc[0].max() - hwc[0].min()), atol=1e-12)
    single = viz.image_grid(np.zeros((5, 7)))
    assert len([ax for ax in single.axes if ax.images]) == 1


def test_image_grid_errors():
    with pytest.raises(ValueError, match="one per image"):
        viz.image_grid(np.zeros((3, 4, 4)), titles=["a"])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        viz.image_grid(np.zeros((2, 4, 4, 5)))
    with pytest.raises(ValueError, match="share one shape"):
        viz.image_grid([np.zeros((4, 4)), np.zeros((5, 5))])


# --------------------------------------------------------------------------- label efficiency


def test_accuracy_vs_labels_dict_forms():
    results = {
        "pretrained probe": {10: 0.5, 100: 0.7, 1000: 0.9},
        "from scratch": [(1000, [0.8, 0.9]), (10, [0.2, 0.4]), (100, [0.4, 0.6])],
    }
    fig = viz.accuracy_vs_labels(results, chance=0.25)
    ax = fig.axes[0]
    lines = _lines(ax)
    np.testing.assert_array_equal(lines["pretrained probe"].get_xdata(), [10, 100, 1000])
    np.testing.assert_allclose(lines["pretrained probe"].get_ydata(), [0.5, 0.7, 0.9])
    np.testing.assert_allclose(lines["from scratch"].get_ydata(), [0.3, 0.5, 0.85])  # means, sorted by n
    np.testing.assert_allclose(lines["chance (0.25)"].get_ydata(), [0.25, 0.25])
    assert ax.get_xscale() == "log"
    assert len(ax.collections) == 1  # the +-1 std band of the seeded method


def test_accuracy_vs_labels_long_dataframe():
    df = pd.DataFrame({
        "method": ["a"] * 4 + ["b"] * 2,
        "n_labels": [10, 10, 100, 100, 10, 100],
        "accuracy": [0.1, 0.3, 0.5, 0.7, 0.9, 0.95],
        "seed": [0, 1, 0, 1, 0, 0],
    })
    lines = _lines(viz.accuracy_vs_labels(df).axes[0])
    np.testing.assert_allclose(lines["a"].get_ydata(), [0.2, 0.6])
    np.testing.assert_allclose(lines["b"].get_ydata(), [0.9, 0.95])
    with pytest.raises(ValueError, match="columns"):
        viz.accuracy_vs_labels(pd.DataFrame({"method": ["a"], "x": [1]}))
    with pytest.raises(ValueError, match="positive"):
        viz.accuracy_vs_labels({"a": {0: 0.5}})


# --------------------------------------------------------------------------- coloured tokens


def test_token_html_colours_and_escapes():
    tokens = ["the", "[MASK]", "<extra_id_0>", "dog", "sat"]
    tags = [None, "mask", "random", "kept", ""]
    out = viz.token_html(tokens, tags)
    assert "&lt;extra_id_0&gt;" in out and "<extra_id_0>" not in out
    positions = [out.index(t) for t in ["the", "[MASK]", "&lt;extra_id_0&gt;", "dog", "sat"]]
    assert positions == sorted(positions)
    mask_chip = f'title="mask" style="background:{viz.TOKEN_PALETTE["mask"]}'
    assert mask_chip + "; padding" in out and mask_chip.replace("mask", "random", 1) not in out
    assert f'title="random" style="background:{viz.TOKEN_PALETTE["random"]}' in out
    assert out.count("background:") == 3 + 3  # three tagged tokens + three legend keys
    custom = viz.token_html(["a", "b"], {1: "subject"}, palette={"subject": "#123456"}, legend=False)
    assert "#123456" in custom and custom.count("background:") == 1
    assert viz.colour_tokens(tokens, tags).data == out


def test_token_html_errors():
    with pytest.raises(ValueError, match="one tag per token"):
        viz.token_html(["a", "b"], ["mask"])
    with pytest.raises(ValueError, match="outside"):
        viz.token_html(["a"], {3: "mask"})


def test_figures_render_as_png_in_a_kernel():
    """Bare Figures (never in pyplot) must still show as images in a notebook."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.kernel = object()  # what a Jupyter kernel's shell has
        viz._render_figures_in_jupyter()
        data, _ = shell.display_formatter.format(viz.loss_curves([1.0, 0.5]))
        png = data["image/png"]
        assert png[:4] == b"\x89PNG" or png.startswith("iVBOR")
    finally:
        InteractiveShell.clear_instance()
