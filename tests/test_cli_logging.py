"""Progress lines print once (issue 21, hit 8): a library that leaves a handler on the root logger (ONNX Runtime's
quantizer calls the module-level ``logging.warning``, which runs ``logging.basicConfig()``) must not make greenlm's
own log lines print twice."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_quiet_onnx_takes_back_a_root_handler_left_by_logging_warning():
    # a fresh process: the root logger has no handler, as in `greenlm quantize`
    done = _python("import logging\n"
                   "from greenlm.runtime.onnx import quiet_onnx\n"
                   "with quiet_onnx():\n"
                   "    logging.warning('from a library')\n"  # what onnxruntime.quantization does
                   "    print('inside', len(logging.getLogger().handlers))\n"
                   "print('after', len(logging.getLogger().handlers), logging.getLogger().level)\n")
    assert done.returncode == 0, done.stderr
    assert "inside 1" in done.stdout  # the library did add one (else this test proves nothing)
    assert "after 0 30" in done.stdout  # gone again, and the root level is back to WARNING


def test_quiet_onnx_keeps_handlers_that_were_there_before():
    root = logging.getLogger()
    mine = logging.NullHandler()
    root.addHandler(mine)
    try:
        from greenlm.runtime.onnx import quiet_onnx

        with quiet_onnx():
            stray = logging.StreamHandler(sys.stderr)
            root.addHandler(stray)
        assert mine in root.handlers and stray not in root.handlers
    finally:
        root.removeHandler(mine)


def test_cli_progress_line_prints_once_even_with_a_root_handler():
    done = _python("import logging\n"
                   "from greenlm.cli.main import _show_greenlm_logs\n"
                   "restore = _show_greenlm_logs()\n"
                   "logging.basicConfig()\n"  # a library configures the root logger mid-command
                   "logging.getLogger('greenlm.progress').info('train: step 3/10')\n"
                   "restore()\n"
                   "g = logging.getLogger('greenlm')\n"
                   "print(len(g.handlers), g.propagate)\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("train: step 3/10") == 1, done.stderr
    assert "greenlm: train: step 3/10" in done.stderr
    assert done.stdout.strip() == "0 True"  # the command's handler is gone and the logger is as it was
