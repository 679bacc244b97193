"""Prompt parsing: "2024" or "two 0 2 four" -> [2, 0, 2, 4]."""

from __future__ import annotations

from .errors import InputError

MAX_DIGITS = 64
WORDS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}


class PromptError(InputError):
    """A prompt that cannot be drawn; the message is one sentence meant for the user."""


def parse_prompt(text: str, max_digits: int = MAX_DIGITS) -> list[int]:
    """Split on whitespace; each token is a run of digit characters or a word zero ... nine."""
    if not isinstance(text, str):
        raise PromptError(f"The prompt must be text, got {type(text).__name__}.")
    tokens = text.split()
    if not tokens:
        raise PromptError("The prompt is empty: type some digits, e.g. 2024 or 'two zero'.")
    digits: list[int] = []
    for token in tokens:
        word = token.lower()
        if word in WORDS:
            digits.append(WORDS[word])
        elif token.isascii() and token.isdigit():
            digits.extend(int(c) for c in token)
        else:
            raise PromptError(f"Cannot draw {token!r}: use digits 0-9 or the words zero ... nine.")
    if len(digits) > max_digits:
        raise PromptError(f"The prompt has {len(digits)} digits; at most {max_digits} can be drawn at once.")
    return digits
