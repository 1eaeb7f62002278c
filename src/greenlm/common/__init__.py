"""The base every layer may use: the user-error type, atomic file writing, optional packages, lazy names and the
progress bar. Standard library only (the progress bar imports rich when it is shown)."""

from greenlm.common.errors import EXIT_BUDGET, BudgetExceeded, GreenlmError
from greenlm.common.files import (atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text,
                                  move_into_place, named_path, read_json, read_json_cache, recover_dir, sha256_file,
                                  writable_file, write_error)

__all__ = ["EXIT_BUDGET", "BudgetExceeded", "GreenlmError", "atomic_dir", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "move_into_place", "named_path", "read_json", "read_json_cache", "recover_dir", "sha256_file", "writable_file", "write_error"]
