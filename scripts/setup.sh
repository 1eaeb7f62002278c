#!/usr/bin/env bash
# Create .venv and install greenlm into it. Usage: bash scripts/setup.sh [extras, e.g. test or all,test]
#
# torch is installed first at 2.13.0: where a local CPU build of 2.13.0 is on pip's find-links (as on
# greenlm's CI machines) pip takes it instead of several GB of CUDA wheels; elsewhere pip takes
# 2.13.0 from PyPI. greenlm itself asks for a range (torch>=2.2,<3), so pip adds no other torch.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
echo "greenlm installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
