"""The one exception type that affectlens raises for bad input.

The CLI turns an :class:`AffectlensError` into a single ``error: ...`` line and a non-zero exit,
so every message must be one self-contained sentence that tells the user what to fix.
"""


class AffectlensError(Exception):
    """Bad input or an unusable artifact; the message is shown to the user as one line."""
