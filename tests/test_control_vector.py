"""llama.cpp control-vector export: the GGUF read back with ``gguf.GGUFReader``.

llama.cpp's loader (``common_control_vector_load_one``) takes 1-D float32 tensors named
``direction.N`` with N >= 1, and adds ``direction.N`` to the output of block N (0-based), the
same numbering as affectlens layers. It refuses ``direction.0``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from affectlens.cli import main
from affectlens.control_vector import export_control_vector
from affectlens.errors import AffectlensError
from affectlens.steer import steer
from conftest import build_emotion_vectors

gguf = pytest.importorskip("gguf")


@pytest.fixture
def vectors(emo_model):
    """Synthetic vectors of the tiny 3-layer model, as extraction would record them."""
    vectors = build_emotion_vectors(emo_model)
    vectors.provenance["model"]["architecture"] = emo_model.architecture
    return vectors


def read(path) -> tuple[dict, dict[str, object]]:
    """``(fields, tensors)`` of a GGUF file: field name -> value, tensor name -> ReaderTensor."""
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    return fields, {tensor.name: tensor for tensor in reader.tensors}


def direction_layer(name: str) -> int:
    """The layer index llama.cpp parses from a tensor name (the part after the first dot)."""
    prefix, _, index = name.partition(".")
    assert prefix == "direction"
    return int(index)


def test_round_trip_names_values_and_metadata(vectors, tmp_path):
    path = export_control_vector(vectors, "calm", 0.25, [1, 2], tmp_path / "calm.gguf")
    assert path == tmp_path / "calm.gguf"
    assert [p.name for p in tmp_path.iterdir()] == ["calm.gguf"]  # no .partial left
    fields, tensors = read(path)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "llama"
    assert fields["controlvector.layer_count"] == 2
    assert sorted(tensors) == ["direction.1", "direction.2"]
    for name, tensor in tensors.items():
        layer = direction_layer(name)
        # what llama.cpp's loader demands of every direction tensor
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        assert len(tensor.shape) == 1 and int(tensor.n_elements) == vectors.hidden_size
        column = vectors.layer_index(layer)
        norm = float(vectors.residual_norms[column])
        unit = vectors.vector("calm", layer)
        expected = (0.25 * norm * unit).numpy()
        np.testing.assert_allclose(np.asarray(tensor.data), expected, rtol=1e-6, atol=1e-7)
        assert math.isclose(np.linalg.norm(tensor.data), 0.25 * norm, rel_tol=1e-5)


def test_default_layers_skip_block_zero_and_keep_artifact_numbering(emo_model, tmp_path):
    # An artifact of layers 0, 2, 3, 5 (a 6-layer model): names follow the layers themselves,
    # not their position in the file, and layer 0 is dropped because llama.cpp refuses it.
    from conftest import build_loaded

    model = build_loaded(num_layers=6)
    vectors = build_emotion_vectors(model, layers=[0, 2, 3, 5])
    path = export_control_vector(vectors, "afraid", -0.1, vectors.layers, tmp_path / "a.gguf")
    fields, tensors = read(path)
    assert sorted(tensors, key=direction_layer) == ["direction.2", "direction.3", "direction.5"]
    assert all(direction_layer(name) >= 1 for name in tensors)
    assert fields["controlvector.layer_count"] == 3
    # no architecture in the provenance: the model hint falls back to the fingerprint's
    assert fields["controlvector.model_hint"] == "llama"
    expected = -0.1 * float(vectors.residual_norms[2]) * vectors.vector("afraid", 3)
    np.testing.assert_allclose(np.asarray(tensors["direction.3"].data), expected.numpy(), 1e-6)


def test_direction_n_added_after_block_n_reproduces_steer(emo_model, vectors, tmp_path):
    """Applying the file as llama.cpp does (direction.N onto block N's output) equals ``steer``."""
    path = export_control_vector(vectors, "desperate", 0.5, [1, 2], tmp_path / "d.gguf")
    _, tensors = read(path)
    ids = emo_model.tokenizer("A short test sentence.", return_tensors="pt").input_ids
    handles = []
    for name, tensor in tensors.items():
        delta = torch.from_numpy(np.array(tensor.data))

        def add(_module, _args, output, delta=delta):
            if isinstance(output, tuple):
                return (output[0] + delta, *output[1:])
            return output + delta

        handles.append(emo_model.layers[direction_layer(name)].register_forward_hook(add))
    try:
        with torch.no_grad():
            as_llama_cpp = emo_model.model(ids).logits
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad(), steer(emo_model, vectors, {"desperate": 0.5}, layers=[1, 2]):
        steered = emo_model.model(ids).logits
    with torch.no_grad():
        plain = emo_model.model(ids).logits
    torch.testing.assert_close(as_llama_cpp, steered)
    assert not torch.allclose(as_llama_cpp, plain)


@pytest.mark.parametrize(
    ("emotion", "alpha", "layers", "message"),
    [
        ("calmm", 0.1, [1], "unknown emotion 'calmm'; did you mean calm"),
        ("calm", 0.1, [0], "never steers block 0"),
        ("calm", 0.1, [1, 7], "layer 7 is not in the vectors file"),
        ("calm", 1.5, [1], "outside the sane range"),
        ("calm", float("nan"), [1], "outside the sane range"),
    ],
)
def test_bad_requests_raise_and_write_nothing(vectors, tmp_path, emotion, alpha, layers, message):
    with pytest.raises(AffectlensError, match=message):
        export_control_vector(vectors, emotion, alpha, layers, tmp_path / "x.gguf")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_the_old_file(vectors, tmp_path):
    path = tmp_path / "out" / "cv.gguf"  # the folder is created
    export_control_vector(vectors, "calm", 0.1, [1, 2], path)
    export_control_vector(vectors, "happy", 0.2, [2], path)
    fields, tensors = read(path)
    assert list(tensors) == ["direction.2"] and fields["controlvector.layer_count"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["cv.gguf"]


# --- the command line ---


@pytest.fixture
def vectors_file(vectors, tmp_path):
    return vectors.save(tmp_path / "emo.safetensors")


def test_cli_exports_all_usable_layers_by_default(vectors, vectors_file, tmp_path, capsys):
    out = tmp_path / "happy.gguf"
    argv = ["export-control-vector", "--vectors", str(vectors_file), "--emotion", "happy"]
    assert main([*argv, "--alpha", "0.3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    fields, tensors = read(out)
    assert sorted(tensors) == ["direction.1", "direction.2"]  # the artifact has layers 0-2
    assert fields["controlvector.layer_count"] == 2
    expected = 0.3 * float(vectors.residual_norms[1]) * vectors.vector("happy", 1)
    np.testing.assert_allclose(np.asarray(tensors["direction.1"].data), expected.numpy(), 1e-6)


def test_cli_layers_option(vectors_file, tmp_path, capsys):
    out = tmp_path / "calm.gguf"
    argv = ["export-control-vector", "--vectors", str(vectors_file), "--emotion", "calm"]
    assert main([*argv, "--layers", "2", "--out", str(out)]) == 0
    _, tensors = read(out)
    assert list(tensors) == ["direction.2"]


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--emotion", "joyfull"], "unknown emotion 'joyfull'"),
        (["--emotion", "calm", "--layers", "0"], "never steers block 0"),
        (["--emotion", "calm", "--layers", "1-9"], "layer 3 is not in the vectors file"),
        (["--emotion", "calm", "--layers", "5-3"], "--layers names no layer"),
        (["--emotion", "calm", "--layers", "one"], "bad --layers 'one'"),
        (["--emotion", "calm", "--alpha", "3"], "outside the sane range"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_no_file(
    vectors_file, tmp_path, capsys, extra, message
):
    out = tmp_path / "cv" / "out.gguf"
    argv = ["export-control-vector", "--vectors", str(vectors_file), "--out", str(out), *extra]
    assert main(argv) == 2
    assert message in _one_error_line(capsys)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emo.safetensors"]
