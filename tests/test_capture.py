"""Residual capture hooks agree with ``output_hidden_states`` and clean up after themselves."""

import pytest
import torch

from affectlens.capture import capture_residuals, hidden_of, run_captured

TEXTS = ["The cat sat on the mat, quietly.", "Hi there"]


def _encode(loaded):
    return loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")


def _reference(loaded, encoded):
    with torch.inference_mode():
        out = loaded.model(
            input_ids=encoded.input_ids,
            attention_mask=encoded.attention_mask,
            output_hidden_states=True,
            use_cache=False,
        )
    return out.hidden_states


def test_captured_layers_match_output_hidden_states(family_model):
    encoded = _encode(family_model)
    reference = _reference(family_model, encoded)
    layers = list(range(family_model.num_layers))
    with capture_residuals(family_model, layers, stop_after=False) as captured:
        got = run_captured(family_model, captured, encoded.input_ids, encoded.attention_mask)
    assert sorted(got) == layers
    # hidden_states[0] is the embedding output; hidden_states[i + 1] is the output of layer i.
    for layer in layers[:-1]:
        assert got[layer].shape == (2, encoded.input_ids.shape[1], 64)
        torch.testing.assert_close(got[layer], reference[layer + 1])
    # The last entry of hidden_states has the final norm applied on these families.
    last = layers[-1]
    with torch.inference_mode():
        normed = family_model.final_norm(got[last])
    torch.testing.assert_close(normed, reference[-1], rtol=1e-4, atol=1e-4)


def test_capture_subset_of_layers_with_early_stop(family_model):
    encoded = _encode(family_model)
    reference = _reference(family_model, encoded)
    calls = []
    later = family_model.layers[2].register_forward_hook(lambda *a: calls.append("layer2"))
    head = family_model.unembedding.register_forward_hook(lambda *a: calls.append("head"))
    try:
        with capture_residuals(family_model, [0, 1]) as captured:
            got = run_captured(family_model, captured, encoded.input_ids, encoded.attention_mask)
    finally:
        later.remove()
        head.remove()
    assert sorted(got) == [0, 1]
    assert calls == [], "layers after the deepest captured one (and the head) must not run"
    torch.testing.assert_close(got[0], reference[1])
    torch.testing.assert_close(got[1], reference[2])


def test_dict_is_refilled_on_each_pass(emo_model):
    tok = emo_model.tokenizer
    first = tok(["aaaa aaaa"], return_tensors="pt")
    second = tok(["zz"], return_tensors="pt")
    with capture_residuals(emo_model, [1]) as captured:
        a = run_captured(emo_model, captured, first.input_ids, first.attention_mask)
        b = run_captured(emo_model, captured, second.input_ids, second.attention_mask)
    assert a[1].shape[1] == first.input_ids.shape[1]
    assert b[1].shape[1] == second.input_ids.shape[1]
    assert a[1].shape != b[1].shape
    # run_captured returns a snapshot, not the live dict
    assert a is not captured and b is not captured


def _hook_count(loaded):
    return sum(len(layer._forward_hooks) for layer in loaded.layers)


def test_hooks_removed_on_exit_and_after_exception(emo_model):
    before = _hook_count(emo_model)
    with capture_residuals(emo_model, [0, 2]):
        assert _hook_count(emo_model) == before + 2
    assert _hook_count(emo_model) == before
    with pytest.raises(RuntimeError, match="boom"), capture_residuals(emo_model, [0, 1, 2]):
        raise RuntimeError("boom")
    assert _hook_count(emo_model) == before


def test_model_runs_normally_after_capture(emo_model):
    encoded = _encode(emo_model)
    with capture_residuals(emo_model, [0]) as captured:
        run_captured(emo_model, captured, encoded.input_ids, encoded.attention_mask)
    with torch.inference_mode():
        logits = emo_model.model(**encoded).logits
    assert logits.shape[:2] == encoded.input_ids.shape


def test_hidden_of_accepts_tuple_or_tensor():
    tensor = torch.ones(1, 2, 3)
    assert hidden_of(tensor) is tensor
    assert hidden_of((tensor, None)) is tensor
