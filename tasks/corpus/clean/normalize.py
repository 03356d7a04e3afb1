"""Text normalization applied to every record before any filter or hash sees it.

Why each step:
- NFC: the same accented word can arrive composed or decomposed; without NFC the exact and
  near-dup hashes and the decontamination n-grams would treat them as different text.
- Control characters (C0/C1 except tab/newline, plus zero-width and BOM characters): invisible
  junk from PDF/XML extraction that splits words for the tokenizers downstream.
- Whitespace: runs of spaces/tabs collapse to one space and each line is stripped, but
  paragraph breaks (blank lines) survive as exactly one blank line, because chunking and the
  duplicated-line filter rely on line structure.
- IU-Xray de-identification: Open-i replaced PHI and some ordinary words by `XXXX`; runs such
  as "XXXX XXXX XXXX" become one placeholder token so the model learns a single, clearly
  marked redaction symbol rather than a repeated nonsense word.
"""

from __future__ import annotations

import re
import unicodedata

REDACTED = "[REDACTED]"

# C0 and C1 controls except \t and \n (\r is handled as a line break first), DEL, and the
# invisible format characters that commonly leak out of extracted documents.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
_HSPACE = re.compile(r"\s+")                 # within one line: any whitespace run
_LONG_LINE = 1 << 20
_BLANKS = re.compile(r"\n{3,}")              # 2+ blank lines -> one blank line
# One or more XXXX tokens (4+ capital X), separated only by spaces/tabs, not glued to other
# letters ("x-XXXX." and "XXXX/granulomas" match; an acronym like "XXXXL" does not).
_XXXX_RUN = re.compile(r"(?<![A-Za-z])X{4,}(?:[ \t]+X{4,})*(?![A-Za-z])")


def normalize_text(text: str, placeholder: str = REDACTED) -> str:
    """NFC, control characters removed, whitespace normalized, XXXX runs -> `placeholder`."""
    if not text:
        return ""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    # Per line, str.split()/join collapses every Unicode space run and strips the line: 3x
    # faster than the `[^\S\n]+` regex, but it builds a list of the line's words, so very long
    # lines (a 10 MB single-line dump would need ~90 MB) take the memory-light regex instead.
    text = "\n".join(" ".join(line.split()) if len(line) < _LONG_LINE
                      else _HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _BLANKS.sub("\n\n", text)
    if "XXXX" in text:
        text = _XXXX_RUN.sub(placeholder, text)
    return text.strip()
