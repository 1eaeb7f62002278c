"""What an early-exit model can be set to: exit policies and what an exit head reads (plain Python, no torch,
so configs can validate against it without loading the model code in ``greenlm.models.early_exit``)."""

POLICIES = ("max_prob", "entropy", "patience")  # Schwartz et al. 2020 | DeeBERT | PABEE
POOLINGS = ("mean", "cls")  # what an exit head reads: the mean of the tokens' states, or the first token's
