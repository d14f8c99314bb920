"""fill_mask as a learner types into it: any case of [MASK], unknown words named with near ones."""

import pytest
import torch

from ssledu import models
from ssledu.data import tokenize
from ssledu.objectives import mlm

TEXTS = ["the red circle is big", "a small blue square waits", "the star jumps to the left"]


@pytest.fixture(scope="module")
def tok():
    return tokenize.train_tokenizer(TEXTS * 2, kind="word")


@pytest.fixture(scope="module")
def bert(tok):
    torch.manual_seed(0)
    return models.bert(tok, "nano", max_len=16)


def test_mask_in_any_case_is_the_mask_token(bert, tok):
    upper = mlm.fill_mask(bert, tok, "the red [MASK] is big", k=3)
    for spelling in ("[mask]", "[Mask]"):
        assert mlm.fill_mask(bert, tok, f"the red {spelling} is big", k=3) == upper


def test_unknown_words_are_named_with_the_closest_known_ones(bert, tok):
    with pytest.raises(ValueError) as err:
        mlm.fill_mask(bert, tok, "the red [MASK] is bigg and sqare zzzz")
    message = str(err.value)
    assert "vocabulary" in message and "[UNK]" in message
    assert "'bigg' (closest: big" in message
    assert "'sqare' (closest: square" in message
    assert "'zzzz' (no close word)" in message
    assert "'red'" not in message and "[MASK]'" not in message  # known words are not listed
