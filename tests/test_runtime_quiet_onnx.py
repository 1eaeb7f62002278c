"""ONNX export and quantization quiet only the loggers greenlm must quiet, and leave every logger as they found it."""

from __future__ import annotations

import logging
import threading

from greenlm.runtime import onnx as gx


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_quiet_onnx_is_scoped():
    root = logging.getLogger()
    other = logging.getLogger("some.other.library")
    ort = logging.getLogger("onnxruntime")
    collect = Collect()
    root.addHandler(collect)
    before = (root.level, other.level, ort.level, list(root.filters))
    try:
        root.setLevel(logging.INFO)
        with gx.quiet_onnx():
            assert root.level == logging.INFO  # the root logger's level is left alone
            assert other.isEnabledFor(logging.WARNING) and not ort.isEnabledFor(logging.WARNING)
            other.warning("another library, during the export")
            logging.warning("the quantizer, on the root logger")  # ONNX Runtime's quantizer does this
            logging.error("a real error")
            thread = threading.Thread(target=lambda: logging.warning("another thread, on the root logger"))
            thread.start()
            thread.join()
        after = (root.level, other.level, ort.level, list(root.filters))
        assert after == (logging.INFO, *before[1:])  # levels and filters as they were
        root.warning("after the export")
    finally:
        root.removeHandler(collect)
        root.setLevel(before[0])
    assert collect.messages == ["another library, during the export", "a real error",
                                "another thread, on the root logger", "after the export"]


def test_quiet_onnx_takes_off_the_handler_logging_warning_installs():
    root = logging.getLogger()
    saved = list(root.handlers)
    for handler in saved:
        root.removeHandler(handler)
    try:
        with gx.quiet_onnx():
            logging.warning("the quantizer, with no handler on the root logger")  # logging.basicConfig() runs
        assert root.handlers == []
    finally:
        for handler in saved:
            root.addHandler(handler)
