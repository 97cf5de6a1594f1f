"""The one exception type for mistakes a user can make (a bad path, a malformed row, a bad option).

The CLI prints its message without a stack trace; the message names the input and the fix.
"""


class ReftuneError(ValueError):
    """A user's input cannot be used; the message says which input and how to fix it."""
