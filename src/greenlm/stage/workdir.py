"""The stage's work folder and lock: the generic mechanism lives in ``greenlm.common.workdir`` (pretraining, below
the stage shell, uses it too); this module keeps its names where the stage shell and its callers import them."""

from greenlm.common.workdir import KEY_FILE, OUTPUT_DIR, STATE_DIR, ClaimedWork, claim, folder_lock, holds_key

__all__ = ["KEY_FILE", "OUTPUT_DIR", "STATE_DIR", "ClaimedWork", "claim", "folder_lock", "holds_key"]
