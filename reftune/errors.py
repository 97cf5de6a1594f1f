"""The one exception type for mistakes a user can make (a bad path, a malformed row, a bad option).

The CLI prints its message without a stack trace; the message names the input and the fix.
"""


class ReftuneError(ValueError):
    """A user's input cannot be used; the message says which input and how to fix it."""


def check_choice(value, choices, what: str) -> None:
    """Refuse a name that is not among `choices` (a table of variants, say) in one line naming them all:
    the config checks a name when it is given, the function that looks it up when it is called.

    >>> check_choice("k4", {"k1": 0, "k3": 0}, "KL estimator")
    Traceback (most recent call last):
    ...
    reftune.errors.ReftuneError: unknown KL estimator 'k4': use one of ['k1', 'k3']
    """
    if value not in choices:
        raise ReftuneError(f"unknown {what} {value!r}: use one of {sorted(choices)}")
