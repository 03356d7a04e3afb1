import time

from tasks.corpus.clean.normalize import REDACTED, normalize_text


def test_empty_and_whitespace_only():
    assert normalize_text("") == ""
    assert normalize_text(" \t\n\n \u00a0") == ""


def test_nfc_composes_accents():
    decomposed = "cafe\u0301 Sjo\u0308gren"
    assert normalize_text(decomposed) == "caf\u00e9 Sj\u00f6gren"
    assert normalize_text(decomposed) == normalize_text("caf\u00e9 Sj\u00f6gren")


def test_whitespace_collapsed_but_paragraphs_kept():
    text = "  Line one\t has   tabs\u00a0and NBSP.  \r\nLine two.\n\n\n\n\nNew   paragraph.  "
    assert normalize_text(text) == "Line one has tabs and NBSP.\nLine two.\n\nNew paragraph."


def test_control_and_invisible_characters_removed():
    assert normalize_text("ab\x00c\x07d\u200be\ufeff\x9ff") == "abcdef"


def test_iu_xray_placeholder_runs_become_one_token():
    text = "XXXX XXXX and lateral views. Aortic XXXX appear normal. Negative chest x-XXXX. XXXX/granulomas"
    out = normalize_text(text)
    assert out == (f"{REDACTED} and lateral views. Aortic {REDACTED} appear normal. "
                   f"Negative chest x-{REDACTED}. {REDACTED}/granulomas")
    assert "XXXX" not in out


def test_xxxx_inside_words_untouched():
    assert normalize_text("XXXXL shirt, XXX score") == "XXXXL shirt, XXX score"


def test_idempotent():
    text = "A\u0301  b\n\n\n c XXXX XXXX\x01"
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_ten_megabyte_single_line_is_fast():
    text = "word\u00a0 other  " * 700_000  # ~10 MB, one line, messy spacing
    t0 = time.perf_counter()
    out = normalize_text(text)
    assert time.perf_counter() - t0 < 10
    assert out.startswith("word other word") and "  " not in out[:1000]
