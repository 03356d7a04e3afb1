"""PHI scrubbing: e-mails, phone numbers, record-number-like ids, secret-bearing URLs.

The public corpora here are already de-identified, so this is a safety net for corpora a
user adds (the `jsonl` connector) and for stray contact data. Each kind becomes a typed
placeholder ([EMAIL], [PHONE], [ID], [URL]) so the model sees *that* something was there
without learning the value, and the stage logs how many of each it replaced.

Patterns are deliberately narrow: medical text is full of numbers (doses "5 to 20
micrograms/kg", ranges "1998-2004", PMIDs "PMID: 12345678", p-values, citations
"2004;62(3):456-459"), and a scrubber that eats them destroys the training signal. So:
- phones need the 3-3-4 North-American grouping with separators (optionally +1/1 prefix and
  parenthesized area code) or a '+' international prefix with 8-15 grouped digits;
- ids need an explicit label (MRN, medical record number/#, patient/account id, SSN) or the
  SSN shape ddd-dd-dddd; the label is kept, only the value is replaced;
- URLs are replaced only when they carry a credential-like query or fragment parameter
  (token, key, access_token, signature, password, session, ...); ordinary links to
  medlineplus.gov & co. are useful content and stay.
"""

from __future__ import annotations

import re
from collections import Counter

KINDS = ("email", "phone", "id", "url")

# URL first: a secret URL may contain an e-mail-like or phone-like substring.
_SECRET_PARAM = (r"(?:access_token|refresh_token|id_token|token|api[_-]?key|apikey|key|secret|"
                 r"client_secret|password|passwd|pwd|auth|signature|sig|session(?:id)?|sid|"
                 r"x-amz-signature|x-amz-credential)")
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"')\]]*?[?&#;]" + _SECRET_PARAM
                  + r"=[^\s<>\"')\]]*[^\s<>\"')\].,;:!?]")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                    r"\.[A-Za-z]{2,24}\b")
# North-American: optional +1/1, area code (parenthesized or not), separators required
# between groups so plain 10-digit numbers (PMIDs, accession numbers) never match.
_PHONE_NA = re.compile(r"(?<![\w/.-])(?:\+?1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
                       r"(?![\w/-]|\.\d)")
# International: '+', country code, then 2-5 groups separated by a space or hyphen (not '.',
# so signed decimals such as "+2.73" or "+0.30 ± 0.50" never match); 8+ digits in total
# is checked in `_intl_phone`.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ -]\(?\d{1,4}\)?){2,5}(?![\w-]|\.\d)")
_ID_LABELLED = re.compile(
    r"(?i)\b(MRN|MR#|medical[ -]record(?:[ -](?:number|no\.?|num\.?))?|patient[ -]id|"
    r"patient[ -](?:number|no\.?)|pt\.?[ -]id|account[ -](?:number|no\.?)|acct\.?(?:[ -]no\.?)?|"
    r"SSN|social security(?: number)?)(\s*(?:#|:|is|=)?\s*)"
    r"((?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,19})\b")
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")

# Prefilters: the full patterns (lookbehinds, case-insensitive alternations) run at ~25 MB/s
# in Python's re; these simple checks let them run only on the few texts that can match,
# which makes scrubbing ~5x faster on the real corpus without changing what is matched.
_ID_KEYWORDS = ("mrn", "mr#", "record", "patient id", "patient-id", "patient number",
                "patient no", "pt", "acct", "account", "ssn", "social security")
_DIGIT_GROUP_HINT = re.compile(r"\d[ .-]\d{4}")
_INTL_HINT = re.compile(r"\+\d{1,3}[ -]\(?\d")


def _intl_phone(m: re.Match) -> str | None:
    """[PHONE] for a real international number (8+ digits), None to leave the match alone."""
    return "[PHONE]" if sum(c.isdigit() for c in m.group()) >= 8 else None


def scrub_phi(text: str) -> tuple[str, Counter]:
    """Return (scrubbed text, Counter of replacements per kind in KINDS)."""
    counts: Counter = Counter()
    if not text:
        return text, counts

    def sub(pattern: re.Pattern, repl, s: str, kind: str) -> str:
        """Like pattern.sub, but `repl` may return None to keep a match, and only real
        replacements are counted."""
        def one(m: re.Match) -> str:
            out = repl(m) if callable(repl) else repl
            if out is None:
                return m.group()
            counts[kind] += 1
            return out
        return pattern.sub(one, s)

    # Cheap guards skip the regexes on the (vast) majority of texts without the trigger char.
    if "://" in text or "www." in text:
        text = sub(_URL, "[URL]", text, "url")
    if "@" in text:
        text = sub(_EMAIL, "[EMAIL]", text, "email")
    low = text.lower()
    if any(k in low for k in _ID_KEYWORDS):
        text = sub(_ID_LABELLED, lambda m: f"{m.group(1)}{m.group(2)}[ID]", text, "id")
    if _DIGIT_GROUP_HINT.search(text):  # both SSNs and NA phones end in "<d><sep>dddd"
        text = sub(_SSN, "[ID]", text, "id")
        text = sub(_PHONE_NA, "[PHONE]", text, "phone")
    if "+" in text and _INTL_HINT.search(text):
        text = sub(_PHONE_INTL, _intl_phone, text, "phone")
    return text, counts
