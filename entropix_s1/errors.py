"""Exception types. Each names the problem so a researcher can fix the input, not debug the library."""

from __future__ import annotations


class EntropixS1Error(Exception):
    """Base class for every error this package raises on purpose."""


class CheckpointError(EntropixS1Error):
    """A checkpoint directory or file is missing, truncated, corrupt, or disagrees with its config."""


class UnsupportedArchitectureError(CheckpointError):
    """The checkpoint's `model_type` / architecture is not one we implement."""


class ConfigError(EntropixS1Error, ValueError):
    """A sampler, budget or model config holds values that cannot work (e.g. min budget > max)."""


class InputError(EntropixS1Error, ValueError):
    """A prompt or request that cannot be served (empty, longer than the context, ...)."""


class DownloadError(EntropixS1Error):
    """Fetching a catalog model failed or produced a file whose checksum does not match."""
