"""Token masks: padding on either side, the start offset, and dropping outlier tokens."""

import torch

from affectlens.masks import outlier_mask, position_mask


def test_position_mask_right_padding():
    attention = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    expected = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(position_mask(attention, 2), expected)


def test_position_mask_left_padding_counts_real_tokens_only():
    attention = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    expected = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(position_mask(attention, 1), expected)


def test_position_mask_same_text_same_tokens_whatever_the_padding():
    right = torch.tensor([[1, 1, 1, 1, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1, 1]])
    assert position_mask(right, 2)[0, :4].tolist() == position_mask(left, 2)[0, 2:].tolist()
    assert int(position_mask(right, 2).sum()) == int(position_mask(left, 2).sum()) == 2


def test_position_mask_start_zero_is_all_real_tokens():
    attention = torch.tensor([[0, 1, 1], [1, 1, 0]])
    assert torch.equal(position_mask(attention, 0), attention.bool())


def test_position_mask_short_text_keeps_its_last_token():
    attention = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    expected = torch.tensor([[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(position_mask(attention, 50), expected)


def test_position_mask_all_padding_row_is_empty():
    attention = torch.tensor([[0, 0, 0], [1, 1, 1]])
    mask = position_mask(attention, 1)
    assert not mask[0].any()
    assert mask[1].tolist() == [False, True, True]


def test_outlier_mask_drops_planted_huge_norm_token():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 6, 8, generator=generator)
    hidden[0, 0] *= 500.0  # a "massive activation" token
    valid = torch.ones(2, 6, dtype=torch.bool)
    keep = outlier_mask(hidden, valid, factor=5.0)
    assert not keep[0, 0]
    assert keep[0, 1:].all()
    assert keep[1].all()


def test_outlier_mask_median_ignores_padding_and_never_keeps_invalid():
    hidden = torch.ones(1, 5, 4)
    hidden[0, 3:] = 1000.0  # huge values at padded positions must not raise the median
    hidden[0, 2] = 20.0  # 20x the real tokens' norm
    valid = torch.tensor([[True, True, True, False, False]])
    keep = outlier_mask(hidden, valid, factor=5.0)
    assert keep.tolist() == [[True, True, False, False, False]]
    loose = outlier_mask(hidden, valid, factor=100.0)
    assert loose.tolist() == [[True, True, True, False, False]]


def test_outlier_mask_is_per_text():
    hidden = torch.ones(2, 3, 4)
    hidden[1] *= 100.0  # a uniformly large text is not an outlier relative to itself
    valid = torch.ones(2, 3, dtype=torch.bool)
    assert outlier_mask(hidden, valid, factor=2.0).all()
