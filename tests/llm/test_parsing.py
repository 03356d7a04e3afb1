"""Strict parsing of JSON-ish LLM replies (the paper's prompt formats); never eval."""

from __future__ import annotations

import pytest

from tasks.llm.parsing import (
    ParseError,
    balanced_blocks,
    extract_tag,
    extract_tags,
    parse_insertion_path,
    parse_json_like,
    parse_literal,
)


def test_paper_stage1_single_quoted_dict():
    reply = "{'Sentence0': 'Diabetes,Insulin', 'Sentence1': 'None'}"
    assert parse_json_like(reply) == {"Sentence0": "Diabetes,Insulin", "Sentence1": "None"}


def test_paper_format_inside_prose_and_double_braces_template_echo():
    reply = "Sure! Here is the output:\n{'Sentence0': 'Hypertension', 'Sentence1': 'None',}\nDone."
    assert parse_json_like(reply) == {"Sentence0": "Hypertension", "Sentence1": "None"}


def test_fenced_json_wins_over_earlier_brackets():
    reply = 'Options [a] and [b]. ```json\n{"label": "high", "score": 0.9}\n``` bye'
    assert parse_json_like(reply, expect=dict) == {"label": "high", "score": 0.9}


def test_strict_json_with_nesting_unicode_and_escapes():
    reply = 'x {"a": [1, 2.5, -3e2, true, false, null], "b": {"c": "caf\\u00e9 \\"q\\""}} y'
    assert parse_json_like(reply) == {"a": [1, 2.5, -300.0, True, False, None],
                                      "b": {"c": 'café "q"'}}


def test_python_literals_true_false_none_and_escaped_quote():
    assert parse_literal("{'a': True, 'b': None, 'c': 'it\\'s', \"d\": [1, 'x',]}") == \
        {"a": True, "b": None, "c": "it's", "d": [1, "x"]}


def test_stage2_bare_list_items_only_when_allowed():
    reply = "{'Sentence0': [Disease:Type 2 diabetes, Drug:Metformin], 'Sentence1': []}"
    with pytest.raises(ParseError):
        parse_json_like(reply)
    assert parse_json_like(reply, allow_bare_items=True) == {
        "Sentence0": ["Disease:Type 2 diabetes", "Drug:Metformin"], "Sentence1": []}


def test_apostrophe_inside_bare_item_is_not_a_quote():
    assert parse_json_like("[Disease:Crohn's disease, Drug:None]", allow_bare_items=True) == \
        ["Disease:Crohn's disease", "Drug:None"]


@pytest.mark.parametrize("reply", [
    "__import__('os').system('x')",
    "{'a': __import__('os').system('x')}",
    "{'a': (1, 2)}",
    "{'a': 1 + 2}",
    "[open('/etc/passwd').read()]",
    "{'a': b'bytes'}",
    "{'a': f'x'}",
    "{'a': lambda: 1}",
    "no json here at all",
    "{'unterminated': 'x}",
    "{'a' 'b'}",
    "",
    "{1: 'non-string key'}",
])
def test_garbage_and_code_raise_parse_error_with_raw(reply):
    with pytest.raises(ParseError) as exc:
        parse_json_like(reply)
    assert exc.value.raw == reply


def test_never_evaluates(tmp_path):
    marker = tmp_path / "pwned"
    reply = f"{{'a': __import__('pathlib').Path('{marker}').touch()}}"
    with pytest.raises(ParseError):
        parse_json_like(reply)
    assert not marker.exists()


def test_deep_nesting_is_bounded():
    with pytest.raises(ParseError):
        parse_json_like("[" * 5000 + "]" * 5000)


def test_expect_type_filters_candidates():
    assert parse_json_like('[1, 2] then {"label": "low"}', expect=dict) == {"label": "low"}
    with pytest.raises(ParseError):
        parse_json_like("[1, 2]", expect=dict)


def test_balanced_blocks_respects_quotes():
    assert balanced_blocks('pre {"a": "}"} post [1]') == ['{"a": "}"}', "[1]"]


def test_insertion_path_tag():
    reply = ("<Reason>It is a disease of the heart.</Reason>"
             "<InsertionPath> Disease.Cardiovascular.Myocarditis </InsertionPath>")
    assert extract_tag(reply, "Reason") == "It is a disease of the heart."
    assert extract_tag(reply, "InsertionPath") == "Disease.Cardiovascular.Myocarditis"
    assert parse_insertion_path(reply) == ["Disease", "Cardiovascular", "Myocarditis"]
    assert extract_tags("<A>1</A> x <A>2</A>", "A") == ["1", "2"]


def test_missing_or_bad_tag():
    with pytest.raises(ParseError):
        extract_tag("<Reason>x</Reason>", "InsertionPath")
    with pytest.raises(ParseError):
        parse_insertion_path("<InsertionPath>A..C</InsertionPath>")
    with pytest.raises(ValueError):
        extract_tags("x", "bad name(")
