"""Atomic text and strict-JSON writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from affectlens.atomic_files import json_safe, write_json_atomic, write_text_atomic


def test_text_is_written_whole_and_no_partial_file_is_left(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "a.txt", "hello")
    assert path.read_text() == "hello"
    write_text_atomic(path, "again")
    assert path.read_text() == "again"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_json_is_strict_with_undefined_numbers_as_null(tmp_path):
    data = {"ci": (math.nan, math.inf), "rho": np.float32(0.5), 3: [np.int64(2), -math.inf]}
    assert json_safe(data) == {"ci": [None, None], "rho": 0.5, "3": [2, None]}
    path = write_json_atomic(tmp_path / "r.json", data)
    assert json.loads(path.read_text(), parse_constant=pytest.fail) == json_safe(data)
