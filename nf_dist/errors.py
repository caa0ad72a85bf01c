"""Exceptions raised by nf-dist.

Every error a user can cause derives from :class:`NfDistError`; messages say what was wrong *and*
how to fix it. All exceptions here are plain ``Exception`` subclasses with a single message
argument, so they pickle across Ray worker boundaries unchanged.
"""


class NfDistError(Exception):
    """Root of every nf-dist error."""


class ConfigError(NfDistError, ValueError):
    """A configuration value, key or override is invalid."""


class DataError(NfDistError, ValueError):
    """A dataset file is missing, corrupt, or does not have the expected layout."""


class CheckpointError(NfDistError, ValueError):
    """A checkpoint is missing, corrupt, or does not match its sidecar."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint is in a format that can execute code when loaded (e.g. pickle)."""


class FingerprintError(NfDistError, RuntimeError):
    """Fingerprint generation failed (e.g. no candidate survived, or the loss became NaN)."""
