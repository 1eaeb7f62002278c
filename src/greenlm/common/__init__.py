"""The base every layer may use: the user-error type and atomic file writing. Standard library only."""

from greenlm.common.errors import GreenlmError
from greenlm.common.files import (atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text,
                                  recover_dir, sha256_file)

__all__ = ["GreenlmError", "atomic_dir", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "recover_dir",
           "sha256_file"]
