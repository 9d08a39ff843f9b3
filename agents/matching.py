"""Does a judge's answer agree with the proposer's reference? The consensus score counts these.

Models phrase the same answer many ways ("The answer is \\boxed{7}.", "7", "seven"), so both sides
are normalized before comparing. Everything here is pure and never raises on odd input.

Documented choices:
- Percent: the sign is just stripped, so "50%" == "50" but "50%" != "0.5".
- Units: stripped; they are only compared when BOTH sides state one. Lengths (mm/cm/m/km, also
  squared/cubed) convert, so "1 m" == "100 cm"; other differing units ("30°" vs "30 rad",
  "5 cm" vs "5 apples") are a mismatch. "unit(s)" counts as no unit.
- Thousands: "1,234" is 1234; "1,2" stays a list.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence

# --- normalization ------------------------------------------------------------------------------

_MINUS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-", "\uff0d": "-"})
# Replaced before NFKC, which would turn "10²" into "102" and "º" into "o".
_PRE_NFKC = {"²": "^2", "³": "^3", "º": "°", "˚": "°", "\u2044": "/"}
_WRAPPERS = (('"', '"'), ("'", "'"), ("`", "`"), ("“", "”"), ("‘", "’"), ("«", "»"),
             ("**", "**"), ("*", "*"), ("{", "}"), ("\\(", "\\)"), ("\\[", "\\]"))
_LEAD = re.compile(r"^(?:the\s+)?(?:(?:final|correct)\s+)*answer\s*(?:is\b|:|=)\s*:?\s*")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_LATEX_SUBS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"\\(?:text|mathrm|mathbf|textbf|operatorname|mbox)\s*\{([^{}]*)\}", r"\1"),
        (r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"\1/\2"),
        (r"\^\s*\{?\s*\\circ\s*\}?|\\degree", "°"),
        (r"\\left|\\right", ""),
        (r"\\%", "%"),
        (r"\\(?:times|cdot)", "×"),
        (r"\\approx", "≈"),
        (r"\\pi", "π"),
        (r"\{,\}|\\[,;:!]", ""),  # LaTeX thin spaces and {,} inside numbers
    )
)
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")


def normalize_answer(text: str) -> str:
    """Canonical surface form: case-folded, unwrapped, no lead-in phrase, no thousands commas."""
    s = str(text)
    for old, new in _PRE_NFKC.items():
        s = s.replace(old, new)
    s = unicodedata.normalize("NFKC", s).translate(_MINUS).casefold()
    s = " ".join(s.split())
    for _ in range(8):  # peel layers until stable; bounded so garbage cannot loop
        before = s
        boxed = _BOXED.findall(s)
        if boxed:
            s = ", ".join(boxed)
        for pattern, repl in _LATEX_SUBS:
            s = pattern.sub(repl, s)
        s = _LEAD.sub("", s).strip()
        if len(s) > 1 and s[0] == "$" and s[-1] == "$":
            s = s.strip("$").strip()
        for left, right in _WRAPPERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
        if s.endswith("."):
            s = s[:-1].rstrip()
        if s == before:
            break
    s = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
    return " ".join(s.split())


# --- numbers ------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
        " fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_EQ_PREFIX = re.compile(r"^[^=≈\d]{0,20}?[=≈]\s*")
_APPROX = re.compile(r"^(?:~|≈|about\b|approximately\b|approx\b\.?|around\b|roughly\b)\s*")
_CURRENCY = re.compile(r"^([-+]?)\s*([$€£])\s*")


def _ratio(a: str, b: str) -> float | None:
    den = float(b)
    return float(a) / den if den else None


def _mixed(whole: str, a: str, b: str) -> float | None:
    frac = _ratio(a, b)
    if frac is None:
        return None
    return float(whole) - frac if whole.startswith("-") else float(whole) + frac


# Tried in order; the first whose remainder is a valid unit tail wins.
_FORMS: tuple[tuple[re.Pattern[str], Callable[..., float | None]], ...] = (
    (re.compile(rf"({_NUM})\s*[×x*]\s*10\s*\^\s*\{{?([-+]?\d+)\}}?"), lambda m, e: float(f"{m}e{e}")),
    (re.compile(r"([-+]?\d+)\s+(\d+)\s*/\s*(\d+)"), _mixed),
    (re.compile(rf"({_NUM})\s*/\s*({_NUM})"), _ratio),
    (re.compile(rf"({_NUM}(?:e[-+]?\d+)?)"), float),
    (re.compile(r"(" + "|".join(_NUMBER_WORDS) + r")\b"), lambda w: float(_NUMBER_WORDS[w])),
)
_UNIT_WORD = r"(?:[^\W\d_]|[°'\"])+(?:\^?[23])?(?:/(?:[^\W\d_]|[°'\"])+(?:\^?[23])?)?"
_TAIL = re.compile(
    rf"\s*(?:%|percent\b|per\s?cent\b)?\s*(?P<unit>{_UNIT_WORD}(?:\s+{_UNIT_WORD}){{0,2}})?\s*"
)
# Words after a number that make it a phrase, not a unit ("3 or 4 apples").
_NOT_UNITS = {"or", "and", "to", "plus", "minus", "times", "x", "×", "by", "over", "than", "not"}


def _quantity(text: str) -> tuple[float, str | None] | None:
    """(value, unit) when the whole answer is one number, optionally with a unit."""
    s = normalize_answer(text)
    for _ in range(4):
        before = s
        s = _APPROX.sub("", _EQ_PREFIX.sub("", s, count=1), count=1)
        if s == before:
            break
    unit: str | None = None
    cur = _CURRENCY.match(s)
    if cur:
        s, unit = cur.group(1) + s[cur.end() :], cur.group(2)
    for pattern, value_of in _FORMS:
        m = pattern.match(s)
        tail = _TAIL.fullmatch(s, m.end()) if m else None
        if not (m and tail):
            continue
        try:
            value = value_of(*m.groups())
        except (ValueError, OverflowError, ZeroDivisionError):
            return None
        if value is None or not math.isfinite(value):
            return None
        written = tail.group("unit")
        if written and any(w in _NOT_UNITS for w in re.split(r"[\s/]+", written)):
            return None
        if written and unit:  # "$5 dollars" is one unit said twice; "$5 apples" is not a quantity
            if _unit_scale(written) != _unit_scale(unit):
                return None
        return value, unit or written
    return None


def parse_number(text: str) -> float | None:
    """The number an answer states, units and a percent sign stripped; None if it is not one."""
    q = _quantity(text)
    return q[0] if q else None


_LENGTH_M = {"mm": 1e-3, "cm": 1e-2, "m": 1.0, "km": 1e3}
_UNIT_ALIASES = {
    **{f"{p}{s}": u for u, p in (("mm", "millimet"), ("cm", "centimet"), ("m", "met"), ("km", "kilomet"))
       for s in ("er", "re")},
    "°": "deg", "deg": "deg", "degree": "deg",
    "$": "$", "dollar": "$", "usd": "$", "€": "€", "euro": "€", "eur": "€", "£": "£", "gbp": "£",
}
_POWER = re.compile(r"^([a-z]+)\^?([23])$")


def _unit_scale(unit: str) -> tuple[str, float] | None:
    """(dimension, factor) for units we know; None for free nouns like "apples"."""
    for word in _stems(unit):
        m = _POWER.match(word)
        base, power = (m.group(1), int(m.group(2))) if m else (word, 1)
        base = _UNIT_ALIASES.get(base, base)
        if base in _LENGTH_M:
            return f"length^{power}", _LENGTH_M[base] ** power
        if power == 1 and base in _UNIT_ALIASES.values():
            return base, 1.0
    return None


def _unit_factor(unit_a: str | None, unit_b: str | None) -> float | None:
    """Factor turning a value in unit_a into unit_b; None when the units disagree."""
    if not unit_a or not unit_b or "unit" in _stems(unit_a) or "unit" in _stems(unit_b):
        return 1.0
    scale_a, scale_b = _unit_scale(unit_a), _unit_scale(unit_b)
    if scale_a and scale_b:
        return scale_a[1] / scale_b[1] if scale_a[0] == scale_b[0] else None
    if scale_a or scale_b:
        return None
    return 1.0 if _same_words(unit_a.split(), unit_b.split()) else None


def _numbers_match(a: float, b: float, integer: bool, rel_tol: float, abs_tol: float) -> bool:
    if integer:
        ra, rb = round(a), round(b)
        if math.isclose(a, ra, abs_tol=1e-6) and math.isclose(b, rb, abs_tol=1e-6):
            return ra == rb
        return a == b
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


# --- text ---------------------------------------------------------------------------------------

_ARTICLES = {"a", "an", "the"}
_SENTENCE_PUNCT = set(".,;:!?'\"`")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")


def _stems(word: str) -> set[str]:
    """The word and its plausible singulars; two words agree if these overlap."""
    out = {word}
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        out.add(word[:-1])
        if word.endswith("es"):
            out.add(word[:-2])
        if word.endswith("ies"):
            out.add(word[:-3] + "y")
    return out


def _same_words(a: Sequence[str], b: Sequence[str]) -> bool:
    return len(a) == len(b) and all(x == y or _stems(x) & _stems(y) for x, y in zip(a, b))


def _words(text: str) -> list[str]:
    tokens = _TOKEN.findall(normalize_answer(text))
    return [
        str(_NUMBER_WORDS[t]) if t in _NUMBER_WORDS else t
        for t in tokens
        if t not in _ARTICLES and t not in _SENTENCE_PUNCT
    ]


def _texts_match(a: str, b: str) -> bool:
    wa, wb = _words(a), _words(b)
    if wa and wb:
        return _same_words(wa, wb)
    na, nb = normalize_answer(a), normalize_answer(b)
    if na or nb:
        return na == nb
    # Both normalize to nothing (e.g. "."): fall back to the raw text so x still matches x.
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


# --- choices ------------------------------------------------------------------------------------

_LETTER = re.compile(r"(?:(?:option|choice)\s*)?(?:\(([a-z])\)|([a-z])(?:[.):]|$)).*")
_OWN_LABEL = re.compile(r"^\(?([a-z])[.):]\s*")


def _choice_letter(text: str, choices: Sequence[str] | None) -> str | None:
    """The option an answer picks: "B", "(b)", "Option B", "B. 12", or an option's own text."""
    s = normalize_answer(text)
    m = _LETTER.fullmatch(s)
    if m:
        letter = m.group(1) or m.group(2)
        if not choices or ord(letter) - ord("a") < len(choices):
            return letter
    if not choices:
        return None
    options = []
    for i, choice in enumerate(choices):
        letter = chr(ord("a") + i)
        option = normalize_answer(str(choice))
        label = _OWN_LABEL.match(option)
        if label and label.group(1) == letter:  # choices written as "A. 12"
            option = option[label.end() :]
        options.append((letter, option))
    exact = [letter for letter, option in options if option and option == s]
    if exact:
        return exact[0]
    loose = [letter for letter, option in options if option and _plain_match(s, option, False, 1e-9, 1e-9)]
    return loose[0] if len(loose) == 1 else None


# --- the judge ----------------------------------------------------------------------------------


def _plain_match(a: str, b: str, integer: bool, rel_tol: float, abs_tol: float) -> bool:
    qa, qb = _quantity(a), _quantity(b)
    if qa and qb:
        factor = _unit_factor(qa[1], qb[1])
        return factor is not None and _numbers_match(qa[0] * factor, qb[0], integer, rel_tol, abs_tol)
    return _texts_match(a, b)


def answers_match(
    answer: str | None,
    reference: str,
    answer_type: str | None = None,
    choices: list[str] | None = None,
    rel_tol: float = 1e-2,
    abs_tol: float = 1e-6,
) -> bool:
    """True when `answer` says the same thing as `reference`. A missing or blank answer never matches."""
    if answer is None or reference is None:
        return False
    a, r = str(answer), str(reference)
    if not a.strip() or not r.strip():
        return False
    if answer_type in (None, "choice") or choices:
        letter_a, letter_r = _choice_letter(a, choices), _choice_letter(r, choices)
        if letter_a and letter_r:
            return letter_a == letter_r
    return _plain_match(a, r, answer_type == "integer", rel_tol, abs_tol)
