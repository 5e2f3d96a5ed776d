"""The one exception family dimsearch raises for bad input.

Every error a user can cause (a config that breaks a rule, a bad YAML file, a dataset folder
that is missing) is a :class:`DimsearchError`, so the CLI can turn exactly these into exit
status 2 with a readable message and let programming errors surface as tracebacks.
"""

from __future__ import annotations

__all__ = [
    "ArchError",
    "ConversionError",
    "DataError",
    "DimsearchError",
    "LatencyError",
    "OutputError",
    "ResourceError",
    "SpaceError",
    "TrainingError",
]


class DimsearchError(Exception):
    """Root of every error caused by user input; the message states the broken rule."""


class ArchError(DimsearchError, ValueError):
    """An architecture config (or its combination with a resolution) breaks a rule."""


class ConversionError(DimsearchError, KeyError):
    """A state dict could not be mapped onto a generated model."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DataError(DimsearchError):
    """A dataset is missing, empty or unreadable."""


class LatencyError(DimsearchError, ValueError):
    """Latency settings break a rule, or a prediction lacks the measurements it needs."""


class ResourceError(DimsearchError):
    """What a run needs from the machine is not there: CPUs or GPUs a trial asks for, a
    device to measure on, a folder to write to, a Ray cluster to join."""


class OutputError(DimsearchError):
    """An output path (``export -o``, ``report -o``) cannot be written as asked."""


class SpaceError(DimsearchError):
    """A search-space file is invalid; the message names the file and the key path."""


class TrainingError(DimsearchError):
    """A proxy training cannot go on (non-finite loss, impossible settings)."""
