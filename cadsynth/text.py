"""Text from outside, cleaned where it enters: what a model writes goes into data sets and reports.

A model's answer may carry what no training sample should: a NUL byte (PostgreSQL's JSON refuses
it), terminal escape sequences, bidi overrides that make text read differently from what it holds
(Trojan Source), a lone surrogate that no UTF-8 file can hold. `Clean` is a string that has had
these removed and is NFC-normalised, so equal text is equal data; every schema a model fills
(cadsynth.domain's drafts, the painter's specs) uses it, with a bound on its length per field.

This module imports nothing of cadsynth: the domain and the painter's specs both build on it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import BeforeValidator

# Line breaks other than \n become \n: removing a lone \r would join two lines into one word.
_BREAKS = re.compile("\r\n?|[\u2028\u2029\x85]")
# C0 controls but tab and newline, DEL, C1 controls, bidi embeddings/overrides (U+202A-U+202E)
# and isolates (U+2066-U+2069), and surrogates (only a lone one can reach a Python str).
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean(text: str) -> str:
    """`text` without unsafe characters (UNSAFE), line breaks as \\n, NFC-normalised."""
    return unicodedata.normalize("NFC", UNSAFE.sub("", _BREAKS.sub("\n", text)))


def _clean_str(value: Any) -> Any:
    # Anything but a string is left for the field's own type to refuse, with its usual message.
    return clean(value) if isinstance(value, str) else value


# A string a model wrote, cleaned before it is checked: a field's max_length counts clean text.
# A bounded alias puts its bound before the validator, `Annotated[str, Field(max_length=40),
# cleaned]` (bounding `Clean` itself there would word the error "items", not "characters").
cleaned = BeforeValidator(_clean_str)
Clean = Annotated[str, cleaned]


def clean_tree(value: Any) -> Any:
    """Every string in a JSON-like value cleaned (dict keys too): the last guard before a file."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_tree(k): clean_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_tree(v) for v in value]
    return value
