"""Errors meant for users: each message is one clear sentence."""


class InputError(ValueError):
    """A request that cannot be served as asked (bad prompt, steps, guidance or seed)."""


class CheckpointError(RuntimeError):
    """Weights that are missing, corrupt, or do not match their config; names the file."""
