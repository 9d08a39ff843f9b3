"""Model text is cleaned and bounded where it enters (cadsynth.text, the drafts in cadsynth.domain)."""

from __future__ import annotations

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import ValidationError

from cadsynth.specs import SpecError, parse_spec
from cadsynth.domain import (
    CAPABILITIES,
    ConsistencyCritiqueDraft,
    ContextDraft,
    CritiqueDraft,
    JudgmentDraft,
    ProposalDraft,
)
from cadsynth.fakes import strict_schema_problems
from cadsynth.text import UNSAFE, clean, clean_tree


@pytest.mark.parametrize(
    ("raw", "clean_text"),
    [
        ("a\x00b", "ab"),
        ("\x1b[31mred\x1b[0m", "[31mred[0m"),  # the escape goes; what it carried is plain text
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("one\r\ntwo\rthree\u2028four\x85five", "one\ntwo\nthree\nfour\nfive"),
        ("\u202eevil\u202c \u2066iso\u2069", "evil iso"),
        ("c1\x9b\x80\x7f", "c1"),
        ("lone \ud800 surrogate", "lone  surrogate"),
        ("Cafe\u0301", "Caf\u00e9"),
        ("<script>alert(1)</script> {{7*7}} ${x} ../../etc/passwd", "<script>alert(1)</script> {{7*7}} ${x} ../../etc/passwd"),
    ],
)
def test_clean_removes_what_no_data_set_should_hold(raw: str, clean_text: str) -> None:
    assert clean(raw) == clean_text
    assert clean(clean_text) == clean_text


def test_clean_tree_cleans_keys_and_values_and_leaves_other_values() -> None:
    assert clean_tree({"a\x00": ["b\x07", 1, None, {"c": "\u202ed"}]}) == {"a": ["b", 1, None, {"c": "d"}]}


def _judgment(**over: object) -> dict[str, object]:
    return {"answer": "4", "rationale": "Count them.", "confidence": 0.5, "quality": 3, **over}


def test_a_draft_holds_clean_text() -> None:
    draft = JudgmentDraft.model_validate(_judgment(answer="\u202e4\x00", rationale="a\r\nb"))
    assert (draft.answer, draft.rationale) == ("4", "a\nb")


def test_a_20000_character_answer_is_refused() -> None:
    with pytest.raises(ValidationError, match="at most 8000 characters"):
        JudgmentDraft.model_validate(_judgment(rationale="A" * 20_000))
    with pytest.raises(ValidationError, match="at most 500 characters"):
        CritiqueDraft.model_validate({"verdict": "keep", "issues": ["A" * 20_000]})


def test_bounds_count_clean_text() -> None:
    # 500 characters once the NUL bytes are gone: within the bound.
    assert JudgmentDraft.model_validate(_judgment(answer="4" * 500 + "\x00" * 100)).answer == "4" * 500


def _context(**weights: list[dict[str, object]]) -> dict[str, object]:
    return {
        "reflection": "r", "guidance": "g", "difficulty_target": 0.4, "exemplars": [],
        "capability_weights": [{"name": "counting", "weight": 2.0}],
        "strategy_weights": [{"name": "interaction", "weight": 1.0}],
        **weights,
    }


@pytest.mark.parametrize("field", ["capability_weights", "strategy_weights"])
def test_a_weight_for_an_unknown_name_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field}.0.name"):
        ContextDraft.model_validate(_context(**{field: [{"name": "B", "weight": 57.1}]}))
    with pytest.raises(ValidationError):  # a strategy is no capability, and the other way round
        ContextDraft.model_validate(_context(capability_weights=[{"name": "interaction", "weight": 1.0}]))


def test_weights_are_lists_no_longer_than_the_names_they_weigh() -> None:
    too_many = [{"name": c, "weight": 1.0} for c in CAPABILITIES] + [{"name": "color", "weight": 1.0}]
    with pytest.raises(ValidationError, match="at most 12 items"):
        ContextDraft.model_validate(_context(capability_weights=too_many))


def test_an_image_spec_label_is_cleaned_and_bounded() -> None:
    spec = parse_spec({"kind": "bar_chart", "bars": [{"label": "a\x00\u202eb", "value": 1}]})
    assert spec.bars[0].label == "ab"  # type: ignore[union-attr]
    with pytest.raises(SpecError, match=r"^bars\[0\]\.label: String should have at most 40 characters$"):
        parse_spec({"kind": "bar_chart", "bars": [{"label": "x" * 41, "value": 1}]})


@pytest.mark.parametrize("draft", [ProposalDraft, CritiqueDraft, ConsistencyCritiqueDraft, JudgmentDraft, ContextDraft])
def test_the_drafts_stay_valid_for_strict_structured_output(draft: type) -> None:
    assert strict_schema_problems(to_strict_json_schema(draft)) == []


def test_the_bounds_and_names_are_in_the_schema_a_model_is_sent() -> None:
    proposal = ProposalDraft.model_json_schema()["properties"]
    assert proposal["solution"]["maxLength"] == 8000 and proposal["choices"]["anyOf"][0]["items"]["maxLength"] == 500
    context = ContextDraft.model_json_schema()
    assert context["properties"]["capability_weights"]["maxItems"] == len(CAPABILITIES)
    assert context["$defs"]["CapabilityWeight"]["properties"]["name"]["enum"] == list(CAPABILITIES)


def test_the_clean_characters_are_exactly_the_unsafe_ones() -> None:
    unsafe = {chr(c) for c in range(0x10000) if UNSAFE.match(chr(c))}
    controls = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} - {"\t", "\n"}
    bidi = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
    surrogates = {chr(c) for c in range(0xD800, 0xE000)}
    assert unsafe == controls | bidi | surrogates
