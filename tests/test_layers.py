"""The architecture's layers (docs/design.md), as import-linter contracts in pyproject.toml.

``lint-imports`` reads ``[tool.importlinter]`` and checks every import in ``src/greenlm`` statically (imports
inside functions included; imports by importlib string are not seen). A second test shows the check can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lint_imports(*args: str, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """Run import-linter's ``lint-imports`` from this interpreter's environment, without a cache on disk."""
    script = Path(sys.executable).with_name("lint-imports.exe" if os.name == "nt" else "lint-imports")
    if script.is_file():
        command = [str(script)]
    else:  # importlinter.cli has no __main__: call the entry point's function
        command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run([*command, "--no-cache", "--no-logo", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _needs_import_linter():
    try:
        import importlinter  # noqa: F401
    except ImportError:
        pytest.fail("import-linter is missing: pip install -e '.[test]' (or pip install 'import-linter>=2')")


def test_greenlm_keeps_its_layers():
    result = lint_imports(cwd=REPO, pythonpath=REPO / "src")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"lint-imports found imports against docs/design.md's layers:\n{output}"
    assert "0 broken" in output, output


@pytest.mark.parametrize("upward", [True, False], ids=["lower-imports-upper", "clean"])
def test_the_check_can_fail(tmp_path, upward):
    package = tmp_path / "layerdemo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "upper.py").write_text("from layerdemo import lower\n\nVALUE = lower.VALUE + 1\n")
    (package / "lower.py").write_text(("import layerdemo.upper\n\n" if upward else "") + "VALUE = 1\n")
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent("""\
        [tool.importlinter]
        root_package = "layerdemo"

        [[tool.importlinter.contracts]]
        name = "upper above lower"
        type = "layers"
        layers = ["layerdemo.upper", "layerdemo.lower"]
        """))
    result = lint_imports("--config", str(config), cwd=tmp_path, pythonpath=tmp_path)
    output = result.stdout + result.stderr
    if upward:
        assert result.returncode != 0, output
        assert "layerdemo.lower -> layerdemo.upper" in output, output
    else:
        assert result.returncode == 0, output
