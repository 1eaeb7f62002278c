"""Compression methods, one module each (distill, prune, quantize, early exit), each a function plus a config.

Every method returns a real, smaller or faster model and exposes a pipeline stage
``run(input_dir, task, config, out_dir, *, work_dir, ...)``. Methods never import each other.
"""
