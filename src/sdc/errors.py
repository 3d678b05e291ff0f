"""The one exception type a user should ever see from sdc.

Entry points catch `SdcError` and print its message on one line instead of a traceback, so every
message must name the file or config key at fault and say what was expected.
"""


class SdcError(Exception):
    """A problem with the user's input (files, configs, checkpoints) rather than a bug in sdc."""
