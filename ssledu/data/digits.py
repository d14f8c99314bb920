"""digits: scikit-learn's bundled handwritten digits as images with captions.

1,797 grey-scale 8x8 images of the digits 0-9 (the UCI "Optical Recognition of
Handwritten Digits" test set, shipped inside scikit-learn, so nothing is
downloaded). Each image gets a caption such as "a handwritten seven", which
makes the set a tiny image-text corpus for CLIP-style training as well as an
image corpus for MAE and SimCLR.
"""

from __future__ import annotations

__all__ = ["DIGIT_NAMES", "caption", "load_digits_images", "load_digits"]

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def caption(label: int) -> str:
    """The caption of a digit: ``caption(7) == "a handwritten seven"``."""
    import numpy as np

    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
        raise ValueError(f"digit label must be an integer in 0..9; got {label!r}")
    return f"a handwritten {DIGIT_NAMES[int(label)]}"


def load_digits_images() -> dict:
    """All 1,797 digits as arrays.

    Returns ``{"images": float32 (1797, 8, 8) in [0, 1], "labels": int64
    (1797,), "captions": list of 1797 str}``. Pixel values are scikit-learn's
    0..16 ink counts divided by 16.
    """
    import numpy as np
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)  # (N, 8, 8)
    labels = bunch.target.astype(np.int64)  # (N,)
    return {"images": images, "labels": labels, "captions": [caption(y) for y in labels]}


def load_digits(seed: int = 0, validation_fraction: float = 0.1, test_fraction: float = 0.1):
    """The digits as a ``datasets.DatasetDict`` with a stratified split.

    Splits train/validation/test (80/10/10 by default: 1437/180/180 images),
    stratified by label so each split has every digit in the same proportion,
    and fixed by ``seed``. Columns: ``image`` (8x8 float32 in [0, 1]),
    ``label`` (``ClassLabel`` with names ``DIGIT_NAMES``) and ``text`` (the
    caption). Use ``ds.with_format("torch")`` to get tensors.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    for name, frac in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            raise ValueError(f"{name} must be in (0, 1); got {frac!r}")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "validation_fraction + test_fraction must leave some training data; "
            f"got {validation_fraction} + {test_fraction}"
        )

    import datasets
    import numpy as np
    from sklearn.model_selection import train_test_split

    data = load_digits_images()
    index = np.arange(len(data["labels"]))
    held = validation_fraction + test_fraction
    train_idx, rest_idx = train_test_split(
        index, test_size=held, stratify=data["labels"], random_state=seed
    )
    val_idx, test_idx = train_test_split(
        rest_idx,
        test_size=test_fraction / held,
        stratify=data["labels"][rest_idx],
        random_state=seed,
    )
    features = datasets.Features(
        {
            "image": datasets.Array2D(shape=(8, 8), dtype="float32"),
            "label": datasets.ClassLabel(names=DIGIT_NAMES),
            "text": datasets.Value("string"),
        }
    )

    def subset(idx):
        idx = np.sort(idx)
        return datasets.Dataset.from_dict(
            {
                "image": data["images"][idx],
                "label": data["labels"][idx],
                "text": [data["captions"][i] for i in idx],
            },
            features=features,
        )

    return datasets.DatasetDict(
        {"train": subset(train_idx), "validation": subset(val_idx), "test": subset(test_idx)}
    )
