"""Denoiser Chain: draw digit prompts with a chain of denoisers and watch every step."""

from .api import Chain, Generation, load_chain
from .errors import CheckpointError, InputError
from .prompt import PromptError, parse_prompt

__all__ = ["Chain", "CheckpointError", "Generation", "InputError", "PromptError", "load_chain", "parse_prompt"]
