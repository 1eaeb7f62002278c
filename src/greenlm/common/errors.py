"""The one exception type for bad input a person can fix, and the one for a run its budget stopped.

The CLI turns a ``GreenlmError`` into one line on stderr and exit code 2, never a traceback.
Raise it only for problems with what the user gave (files, flags, recipes, models), with a message
that names the thing and says what to do. Bugs stay ordinary exceptions.
"""


class GreenlmError(Exception):
    """Bad input: the message is shown to the user as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # one line, whatever the caller wrote


EXIT_BUDGET = 3  # the exit code of a run stopped by its budget (--max-kwh, --max-co2e-kg, --max-usd)


class BudgetExceeded(Exception):
    """A run stopped because its projected (or, for ``greenlm measure``, its spent) total passed a budget.

    Not a ``GreenlmError``: nothing was wrong with the input. The CLI prints the message as one line and exits with
    ``EXIT_BUDGET`` (3), distinct from bad input (2), so a CI job can fail a run that would overspend."""

    exit_code = EXIT_BUDGET

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))
