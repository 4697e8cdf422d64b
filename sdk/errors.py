"""Exceptions raised by salsdk.

Every error names the file or value that was wrong and says what to do about it, so that callers (and the
CLI, which prints ``str(error)`` without a traceback) can show it to a person as it is.
"""


class SalsdkError(Exception):
    """Base class of every error salsdk raises on purpose."""


class UnknownModelError(SalsdkError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class WeightsError(SalsdkError):
    """A checkpoint that is missing, unreadable, corrupted or belongs to another model."""


class InputError(SalsdkError, ValueError):
    """An image, video or array that cannot be used as model input."""


class BundleError(SalsdkError):
    """An artifact bundle that is incomplete, edited or inconsistent with its manifest."""


class ConversionError(SalsdkError):
    """A conversion or quantization step that failed or did not pass its fidelity gate."""
