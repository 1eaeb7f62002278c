"""greenlm.common.optional: one availability check and one message for every optional package."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest

from greenlm.common import GreenlmError
from greenlm.common.optional import PACKAGES, is_available, missing_message, require

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_missing_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # blocked: import onnxruntime fails
    assert not is_available("onnxruntime")
    with pytest.raises(GreenlmError) as err:
        require("onnxruntime", "int8 models")
    assert str(err.value) == ("ONNX Runtime is not installed (needed for int8 models); "
                              "install it with: pip install 'greenlm[onnx]'")
    # no purpose given: the table's own
    assert missing_message("nvidia-ml-py") == ("nvidia-ml-py is not installed (needed for reading GPU power through "
                                               "NVML); install it with: pip install 'greenlm[energy]'")


def test_missing_package_found_by_find_spec(monkeypatch):
    monkeypatch.delitem(sys.modules, "optuna", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    from greenlm.common import optional

    optional._findable.cache_clear()
    try:
        assert not is_available("optuna")
        with pytest.raises(GreenlmError, match=r"^Optuna is not installed \(needed for greenlm sweep\); "
                                               r"install it with: pip install 'greenlm\[sweep\]'$"):
            require("optuna")
    finally:
        optional._findable.cache_clear()


def test_installed_package_is_available_and_required():
    pytest.importorskip("onnxruntime")
    assert is_available("onnxruntime")
    assert require("onnxruntime").__name__ == "onnxruntime"


def test_is_available_does_not_import(monkeypatch):
    pytest.importorskip("optuna")
    monkeypatch.delitem(sys.modules, "optuna", raising=False)
    assert is_available("optuna")
    assert "optuna" not in sys.modules


def test_table_matches_pyproject_extras():
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for distribution, package in PACKAGES.items():
        assert package.extra in extras, f"{distribution}: no extra '{package.extra}' in pyproject.toml"
        names = [re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower() for req in extras[package.extra]]
        assert distribution in names, f"extra '{package.extra}' does not install {distribution}"
