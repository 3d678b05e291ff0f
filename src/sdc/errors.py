"""The one exception type a user should ever see from sdc.

Entry points catch `SdcError` and print its message on one line instead of a traceback, so every
message must name the file or config key at fault and say what was expected.
"""


class SdcError(Exception):
    """A problem with the user's input (files, configs, checkpoints) rather than a bug in sdc."""


def first_line(err: BaseException) -> str:
    """An exception's message as one line, for the reason in brackets after an sdc error: its
    first line, whole (or its type's name when it has no message)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
