"""The one exception type for bad input a person can fix.

The CLI turns a ``GreenlmError`` into one line on stderr and exit code 2, never a traceback.
Raise it only for problems with what the user gave (files, flags, recipes, models), with a message
that names the thing and says what to do. Bugs stay ordinary exceptions.
"""


class GreenlmError(Exception):
    """Bad input: the message is shown to the user as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # one line, whatever the caller wrote
