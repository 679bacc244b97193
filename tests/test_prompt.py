import pytest

from model import InputError, PromptError, parse_prompt
from model.prompt import MAX_DIGITS


@pytest.mark.parametrize(
    "text, digits",
    [
        ("2024", [2, 0, 2, 4]),
        ("two 0 2 four", [2, 0, 2, 4]),
        ("  Three ONE   four\tone five ", [3, 1, 4, 1, 5]),
        ("021324354657687980", [int(c) for c in "021324354657687980"]),
        ("8 6 7 5 3 0 9", [8, 6, 7, 5, 3, 0, 9]),
        ("nine 99", [9, 9, 9]),
    ],
)
def test_parses_digits_and_words(text, digits):
    assert parse_prompt(text) == digits


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("twenty", "'twenty'"),
        ("12a4", "'12a4'"),
        ("2 + 2", "'+'"),
        ("٣", "'٣'"),  # a non-ASCII digit is not a 0-9 digit
        ("1" * (MAX_DIGITS + 1), f"at most {MAX_DIGITS}"),
    ],
)
def test_bad_prompts_name_the_problem(text, fragment):
    with pytest.raises(PromptError) as e:
        parse_prompt(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, InputError)


def test_max_length_is_allowed():
    assert len(parse_prompt("7" * MAX_DIGITS)) == MAX_DIGITS


def test_non_text_prompt():
    with pytest.raises(PromptError, match="must be text"):
        parse_prompt(None)
