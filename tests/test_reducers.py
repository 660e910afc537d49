"""Streaming reducers give the same means as a naive computation and checkpoint faithfully."""

import torch

from affectlens.reducers import GroupMeanReducer, ScalarMeanReducer


def _data(seed=0, n=17):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randn(n, 3, 5, generator=generator)
    groups = torch.randint(0, 3, (n,), generator=generator)
    groups[:3] = torch.tensor([0, 1, 2])  # every group present
    return groups, items


def test_group_means_equal_naive_means_over_batches():
    groups, items = _data()
    reducer = GroupMeanReducer(["a", "b", "c", "empty"], 3, 5)
    for start in range(0, len(items), 4):
        reducer.add(groups[start : start + 4], items[start : start + 4])
    means = reducer.means()
    assert means.shape == (4, 3, 5)
    assert means.dtype == torch.float32
    for g in range(3):
        torch.testing.assert_close(means[g], items[groups == g].mean(dim=0))
    assert reducer.counts.tolist()[:3] == [int((groups == g).sum()) for g in range(3)]
    assert torch.isnan(means[3]).all()


def test_group_reducer_state_round_trip_resumes_identically():
    groups, items = _data(1)
    whole = GroupMeanReducer(["a", "b", "c"], 3, 5)
    whole.add(groups[:8], items[:8])
    whole.add(groups[8:], items[8:])

    first = GroupMeanReducer(["a", "b", "c"], 3, 5)
    first.add(groups[:8], items[:8])
    state = first.state_dict()
    saved = {k: v.clone() for k, v in state.items()}
    resumed = GroupMeanReducer(["a", "b", "c"], 3, 5)
    resumed.load_state_dict(state)
    resumed.add(groups[8:], items[8:])
    assert torch.equal(resumed.means(), whole.means())
    assert torch.equal(resumed.counts, whole.counts)
    # loading copies: the resumed reducer did not write into the checkpointed tensors
    assert all(torch.equal(state[k], saved[k]) for k in state)


def test_scalar_means_and_round_trip():
    reducer = ScalarMeanReducer(3)
    reducer.add(torch.tensor([2.0, 0.0, 9.0]), torch.tensor([1.0, 0.0, 3.0]))
    reducer.add(torch.tensor([4.0, 0.0, 3.0]), torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(reducer.means(), torch.tensor([3.0, 0.0, 3.0]))

    resumed = ScalarMeanReducer(3)
    resumed.load_state_dict(reducer.state_dict())
    resumed.add(torch.tensor([6.0, 5.0, 0.0]), torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(resumed.means(), torch.tensor([4.0, 5.0, 3.0]))
    # the original is untouched by the resumed one's additions
    torch.testing.assert_close(reducer.means(), torch.tensor([3.0, 0.0, 3.0]))
