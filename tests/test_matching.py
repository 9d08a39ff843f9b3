"""The answer matcher decides the consensus score, so both false matches and misses matter."""

from __future__ import annotations

import random
import string

import pytest

from cadsynth.agents.matching import answers_match, normalize_answer, parse_number

CHOICES = ["12", "15", "a red circle", "blue square"]

# (answer, reference, answer_type, choices, expected)
CASES: list[tuple[str | None, str, str | None, list[str] | None, bool]] = [
    # numbers
    ("12", "12", None, None, True),
    ("12", "13", None, None, False),
    ("12", "13", "number", None, False),
    ("1/2", "0.5", None, None, True),
    ("3/4", "0.75", "number", None, True),
    ("50%", "50", None, None, True),
    ("50%", "0.5", None, None, False),  # percent sign is just stripped
    ("50 percent", "50%", "number", None, True),
    ("3.14", "3.1416", "number", None, True),  # within the default 1% tolerance
    ("10 cm", "10", "number", None, True),
    ("10cm", "10 centimeters", None, None, True),
    ("1 m", "100 cm", "number", None, True),
    ("10 m", "10 cm", "number", None, False),
    ("25 cm^2", "2500 mm²", "number", None, True),
    ("30°", "30 degrees", "number", None, True),
    ("30^\\circ", "30", "number", None, True),
    ("$5", "5 dollars", "number", None, True),
    ("5 apples", "5 apple", "integer", None, True),
    ("5 cm", "5 apples", "number", None, False),
    ("4 units", "4 cm", "number", None, True),
    ("\\boxed{7}", "7", None, None, True),
    ("$\\boxed{7}$", "7", "integer", None, True),
    ("The answer is 7.", "7", None, None, True),
    ("Answer: 7", "7", "integer", None, True),
    ("x = 7", "7", "number", None, True),
    ("1,234", "1234", "number", None, True),
    ("1,234,567.5", "1234567.5", "number", None, True),
    ("1,2", "12", None, None, False),  # a list, not a thousands separator
    ("−5", "-5", "number", None, True),
    ("-5", "5", "number", None, False),
    ("1.5e3", "1500", "number", None, True),
    ("1.5 × 10^3", "1500", "number", None, True),
    ("2 1/2", "2.5", "number", None, True),
    ("\\frac{3}{4}", "0.75", "number", None, True),
    ("three", "3", "integer", None, True),
    ("3.0", "3", "integer", None, True),
    ("3.0000000001", "3", "integer", None, True),  # float noise
    ("3.4", "3", "integer", None, False),
    ("3 or 4", "3", None, None, False),
    ("1/0", "1/0", "number", None, True),  # not a number, but still equal to itself
    # choices
    ("B", "C", "choice", None, False),
    ("B", "b", "choice", None, True),
    ("(B)", "B", "choice", None, True),
    ("b)", "B", "choice", None, True),
    ("Option B", "B", "choice", None, True),
    ("B. 12", "B", "choice", None, True),
    ("The answer is (B).", "B", None, None, True),
    ("**B**", "B", "choice", None, True),
    ("15", "B", "choice", CHOICES, True),
    ("15.0", "B", "choice", CHOICES, True),
    ("12", "B", "choice", CHOICES, False),
    ("A red circle", "C", "choice", CHOICES, True),
    ("A red circle", "A", "choice", CHOICES, False),
    ("red circle", "C", "choice", CHOICES, True),
    ("A", "C", "choice", CHOICES, False),
    ("E", "E", "choice", CHOICES, True),  # out of range on both sides: still itself
    ("15", "15", "choice", ["A. 12", "B. 15"], True),
    ("B", "15", "choice", ["A. 12", "B. 15"], True),
    # text
    ("red", "blue", "text", None, False),
    ("Red", "red.", "text", None, True),
    ("triangles", "triangle", "text", None, True),
    ("a red circle", "red circle", "text", None, True),
    ("the boxes", "box", "text", None, True),
    ("'Yes'", "yes", None, None, True),
    ("left of the square", "right of the square", "text", None, False),
    ("red circle", "red", "text", None, False),
    ("a", "the", "text", None, False),
    ("!!!", "???", None, None, False),
    # never matches
    (None, "7", None, None, False),
    ("", "7", None, None, False),
    ("   ", "   ", None, None, False),
]


@pytest.mark.parametrize(("answer", "reference", "answer_type", "choices", "expected"), CASES)
def test_answers_match(
    answer: str | None, reference: str, answer_type: str | None, choices: list[str] | None, expected: bool
) -> None:
    assert answers_match(answer, reference, answer_type, choices) is expected
    if answer is not None:  # every case in the table is symmetric
        assert answers_match(reference, answer, answer_type, choices) is expected


def test_tolerance_is_configurable() -> None:
    assert answers_match("3.14", "3.1416", "number")
    assert not answers_match("3.14", "3.1416", "number", rel_tol=1e-4)
    assert answers_match("0.0000001", "0", "number")  # abs_tol rescues values near zero
    assert not answers_match("0.001", "0", "number")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is $\\boxed{7}$.", "7"),
        ("Final answer: 1,234", "1234"),
        ("  Red   Circle ", "red circle"),
        ('"B"', "b"),
        ("1,2", "1,2"),
        ("−5", "-5"),
        ("\\frac{1}{2}", "1/2"),
        ("1\\,234", "1234"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45%", 45.0),
        ("3/4", 0.75),
        ("-2.5", -2.5),
        ("6.02e23", 6.02e23),
        ("12 cm", 12.0),
        ("12cm", 12.0),
        ("30°", 30.0),
        ("30 degrees", 30.0),
        ("$5", 5.0),
        ("5 dollars", 5.0),
        ("about 3", 3.0),
        ("red", None),
        ("3 or 4", None),
        ("1e999", None),  # not finite
        ("1/0", None),
        ("", None),
    ],
)
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


_TYPES = (None, "number", "integer", "choice", "text")


def _check_reflexive(x: str) -> None:
    for answer_type in _TYPES:
        assert answers_match(x, x, answer_type), (x, answer_type)
        answers_match(x, x[::-1], answer_type, choices=[x, x[:3]])  # must not raise
    normalize_answer(x)
    parse_number(x)


def test_reflexive_on_random_garbage() -> None:
    # Runs without hypothesis too; the alphabet leans on the characters the parser cares about.
    rng = random.Random(20240611)
    alphabet = string.printable + "−°%$€{}\\^²½×≈“”"
    for _ in range(2000):
        x = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        if x.strip():
            _check_reflexive(x)


def test_reflexive_property() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1))
    def prop(x: str) -> None:
        hypothesis.assume(x.strip())
        _check_reflexive(x)

    prop()
