"""What an early-exit model can be set to: exit policies, what an exit head reads, and the checks of a policy
setting (plain Python, no torch, so configs can validate against it without loading the model code in
``greenlm.models.early_exit``)."""

from __future__ import annotations

from greenlm.common import GreenlmError

POLICIES = ("max_prob", "entropy", "patience")  # Schwartz et al. 2020 | DeeBERT | PABEE
POOLINGS = ("mean", "cls")  # what an exit head reads: the mean of the tokens' states, or the first token's


def check_policy(policy: str, threshold: float | None, patience: int | None) -> None:
    """Raise ``GreenlmError`` for a policy setting a user could not mean."""
    if policy not in POLICIES:
        raise GreenlmError(f"unknown exit policy '{policy}'; use one of: {', '.join(POLICIES)}")
    if policy == "patience":
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise GreenlmError(f"patience must be a whole number >= 1 (exits that must agree), got {patience!r}")
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise GreenlmError(
            f"exit threshold {threshold!r} is outside (0, 1]: 1.0 never exits early, smaller values exit earlier"
        )


def policy_exits_early(policy: str, threshold: float | None, patience: int | None, num_exits: int) -> bool:
    """False when no example can leave before the last of ``num_exits`` exits (then no exit head needs to run)."""
    if policy == "patience":
        return patience <= num_exits - 2  # the streak at the j-th exit (1-based) is at most j - 1
    return threshold < 1.0
