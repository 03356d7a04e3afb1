"""Deterministic answer parsing: option letters, yes/no/maybe labels, short answers, numbers with units.

Why rules and not a judge model: the paper (§6) asks for deterministic parsing of closed-form
answers so the same output always gets the same score on every machine. Every parser returns a
`Parsed(value, failure, rule)`; a failure (empty, only_reasoning, no_answer, multiple_answers,
invalid_option) scores as wrong and is counted separately by the report, so a model that never
follows the answer format shows up as such instead of as "bad at medicine".

Before any rule: Unicode NFKC (full-width `Ｃ` and `：` become `C` and `:`), gigantic outputs keep
only their head and tail (`MAX_PARSE_CHARS`: bounded time), and reasoning is removed -- complete
`<think>...</think>` blocks, text before a stray `</think>`, and an unclosed `<think>` with
everything after it (a reply that is only reasoning is `only_reasoning`, never mined for a letter).

Option letters (`parse_choice`), first rule that fires wins:
1. the last `<answer>X</answer>`, then the last `\\boxed{X}` (X as in rule 4, or the option's text);
2. the last answer statement that names something: a marker (`Answer:`, `the answer is`,
   `Correct answer —`, `the best option is`, `I would choose`, `I'd go with`, `答案：`,
   `La respuesta es`, `Ответ:`) followed by an option's text (`The answer is glomerulus`) or a letter
   in any case (`answer: c`, `the answer is (C)`, `Answer: not A but C`). A conclusion word (`so`,
   `therefore`, `thus`, `hence`, `it's`) counts only before a capital letter ending its clause
   (`..., so C.`). The last one, so a model that walks through options before concluding is scored
   on its conclusion; a statement naming several (`Answer: A or C`, `A, C`, `bladder and kidney`)
   is `multiple_answers`; a letter that is not an option is `invalid_option`;
3. `C is correct` / `option C is the best` / `C is the right answer` / `C is the most likely ...`;
4. the reply is a letter (`c`, `(C)`, `[C]`, `C)`, `**C**`, `Option C.`), starts with one and a
   delimiter (`C. Glomerulus`, `(C) Glomerulus`, `C: Glomerulus`), or its last line is one;
5. the option's text instead of its letter (whole words, case/punctuation-insensitive; an option
   whose text is part of a longer matched option yields to it; two options -> `multiple_answers`);
6. the options the reply names and does not rule out: `option C` anywhere, a capital letter on its
   own only in short replies (<= 6 words: `I think C`, `Not B, C.`); one is the answer, several are
   `multiple_answers`. Letters in longer replies without a statement are reasoning: `no_answer`.
In every rule a letter is not an option when it is part of a word (`I'd`, `B12`, `T-cell`, `e.g.`)
or is the article `a` / pronoun `I` before a word (`A patient`, `I think`; `A because`, `A and C`
are letters), and a letter the reply rules out (`not A`, `rather than A`, `A is wrong`, `A, B and
D are wrong`) is not its answer.

Labels (`parse_label`, yes/no/maybe): tags and answer statements as above, then the first word,
then exactly one label word in a short reply (one after `not` is ruled out, not given: `Not yes,
no.`). A small table maps other languages' words (sí/oui/ja/是/да -> yes, ...) so an answer in
another language is still read when it is one.

Short answers (`extract_open`): tag, boxed, the rest of the line after the last `Answer:`, else the
first non-empty line. `normalize_answer` is SQuAD's (case, punctuation, articles, whitespace);
`quantities` reads numbers with units, converted within a dimension (25 mm == 2.5 cm).
"""

from __future__ import annotations

import dataclasses
import re
import string
import unicodedata

MAX_PARSE_CHARS = 20_000        # head + tail of a gigantic output are parsed, 10k each
SHORT_REPLY_WORDS = 6           # rule 6 (a lone letter) only in replies this short
FAILURES = ("empty", "only_reasoning", "no_answer", "multiple_answers", "invalid_option")


@dataclasses.dataclass(frozen=True)
class Parsed:
    value: str | None
    failure: str | None = None
    rule: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


# ---- preparation ----------------------------------------------------------------------------
_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)


def bound(text: str) -> str:
    if len(text) <= MAX_PARSE_CHARS:
        return text
    half = MAX_PARSE_CHARS // 2
    return text[:half] + "\n...\n" + text[-half:]


def strip_thinking(text: str) -> tuple[str, bool]:
    """(text without reasoning, whether reasoning was present)."""
    had = False
    out, n = _THINK_BLOCK.subn("", text)
    had = n > 0
    closes = list(_THINK_CLOSE.finditer(out))
    if closes:                       # reasoning opened by the chat template, closed in the output
        out, had = out[closes[-1].end():], True
    m = _THINK_OPEN.search(out)
    if m:                            # unclosed: everything after it is unfinished reasoning
        out, had = out[:m.start()], True
    return out.strip(), had


def prepare(text: str | None) -> tuple[str, str | None]:
    """(answer body, failure) for a raw model output."""
    if text is None or not str(text).strip():
        return "", "empty"
    body, had_reasoning = strip_thinking(unicodedata.normalize("NFKC", bound(str(text))))
    if not body:
        return "", "only_reasoning" if had_reasoning else "empty"
    return body, None


# ---- option letters -------------------------------------------------------------------------
# Answer statements. A strong marker may be followed by the letter in any case or by an option's
# text; a weak one (a conclusion word) only by a capital letter that ends the clause ("so C."),
# because "so B cells ..." and "it is a ..." are prose.
_STRONG = (r"(?<![A-Za-z])(?i:final\s+answer|(?:correct|best|right)\s+(?:answer|option|choice)|answer|ans|"
           r"choose|chose|pick|select|go(?:ing)?\s+with|opt\s+for|respuesta(?:\s+correcta)?|réponse|antwort|"
           r"risposta|resposta)(?![A-Za-z])|(?i:ответ)(?![^\W\d_])|正确答案|答案")
_WEAK = r"(?<![A-Za-z])(?i:so|therefore|thus|hence|it['’]?s|it\s+is)(?![A-Za-z])"
_LINK = (r"(?:[\s*_:,=\-–—]|(?i:is|would\s+be|should\s+be|will\s+be|must\s+be|probably|likely|definitely|"
         r"clearly|es|est|ist|è|é)(?![A-Za-z])|是|为)*")
_STATEMENT = re.compile(rf"(?:{_STRONG}|(?P<weak>{_WEAK})){_LINK}")
# One option letter: "C", "(c)", "[C]", "C.", "C)", "option C", and "**C**" once `_LEAD` is skipped.
# A letter followed by another letter, a digit, an apostrophe or "-x"/".x" is part of a word (I'd,
# B12, T-cell, e.g.). No two quantifiers here can take the same run of characters: a degenerate
# output of 20k stars or spaces must not backtrack for minutes.
_LEAD = re.compile(r"[\s*_]*")
_LETTER = re.compile(r"(?<![A-Za-z0-9'’])(?P<option>(?i:option|choice)(?![A-Za-z])[\s*_]*)?(?:(?P<open>[(\[])\s*)?"
                     r"(?P<letter>[A-Za-z])(?![A-Za-z0-9'’]|[.\-][A-Za-z0-9])\s*(?P<close>[)\].:\-–—])?[*_]*")
# a letter answer is followed by words like these; the article and the pronoun are not
_WORD_AFTER = re.compile(r"\s+(?!(?:and|or|because|since|as|is|but|if|over|which|given|due|based)\b)[a-z0-9]")
_NEGATIVE = r"(?:not|wrong|incorrect|false|unlikely|excluded|ruled\s+out)"
_REJECTED_AFTER = re.compile(                                     # "A is wrong", "A isn't", "A, B and D are wrong"
    rf"[\s)\]*_]*(?i:(?:(?:is|are|was|were|seems)\s+)?{_NEGATIVE}|(?:is|are|was|were)n['’]?t"
    rf"|(?:(?:,|and|or)\s*\(?[A-Z]\)?[\s)\]*_]*)+(?:are|were)\s+(?:all\s+|both\s+)?{_NEGATIVE})(?![A-Za-z])")
_REJECTED_BEFORE = re.compile(r"(?i:\bnot|n['’]t|\bnever|\bthan|\binstead\s+of|\bexcept|\bexclud(?:e|ing)|"
                              r"\brul(?:e|ing)\s+out|\beliminate)[\s*_]*$")
_NOT_FIRST = re.compile(r"[\s*_]*(?i:not)\s+(?:(?i:option|choice)\s*)?[(\[]?[A-Z][)\]]?(?![A-Za-z0-9])[\s,;]*"
                        r"(?:(?i:but|rather|it['’]?s|it\s+is)(?![A-Za-z])\s*)?")
_MORE = re.compile(r"[\s*_]*(?:,|/|&|\+|(?i:and|or|y|et|und|o)(?![A-Za-z])|和|或)\s*")
_CLAUSE_END = re.compile(r"[)\]*_\s]*(?:[.,;!]|$)")
_IS_CORRECT = re.compile(r"(?<![A-Za-z0-9'’*_])(?:(?i:option|choice)\s*)?[*_]*\(?([A-Z])\)?[*_]*\s+(?i:is)\s+"
                         r"(?i:the\s+)?(?i:correct|right|best|answer|most\s+likely|most\s+appropriate)(?![A-Za-z])")
_BOXED = re.compile(r"\\boxed\{\s*(?:\\text(?:bf)?\{)?([^{}]*)\}")  # \boxed{C}, \boxed{\text{C}}
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_STATED_CHARS = 300     # an answer statement is read up to the end of its line, at most this far


def _is_word(m: re.Match, text: str) -> bool:
    """'a patient', 'I think', 'A 45-year-old': the article or the pronoun, not an option."""
    return (m["letter"] in "AaIi" and not (m["option"] or m["open"] or m["close"])
            and bool(_WORD_AFTER.match(text, m.end("letter"))))


def _rejected(m: re.Match, text: str) -> bool:
    """'A is wrong', 'not B', 'rather than C': the reply names the letter to rule it out."""
    return bool(_REJECTED_AFTER.match(text, m.end())
                or _REJECTED_BEFORE.search(text, max(0, m.start() - 40), m.start()))


def _letter_at(text: str, pos: int = 0, lower: bool = True) -> re.Match | None:
    m = _LETTER.match(text, _LEAD.match(text, pos).end())
    if not m or (m["letter"].islower() and not lower) or _is_word(m, text) or _rejected(m, text):
        return None
    return m


def _chosen(m: re.Match, text: str, options: dict[str, str]) -> Parsed:
    """The letter `m` names; a second letter joined to it by "or", "and", "," ... is a second answer."""
    letter = m["letter"].upper()
    more = _MORE.match(text, m.end())
    other = more and _letter_at(text, more.end())
    if other and other["letter"].upper() != letter and other["letter"].upper() in options:
        return Parsed(None, "multiple_answers")
    return Parsed(letter, None) if letter in options else Parsed(None, "invalid_option")


def _stated(text: str, options: dict[str, str], weak: bool) -> Parsed | None:
    """What follows an answer statement: an option's text or a letter (weak: a letter ending the clause)."""
    if not weak:
        negated = _NOT_FIRST.match(text)        # "the answer is not A but C"
        text = text[negated.end():] if negated else text
        by_text = _text_at(text, options)
        if by_text is not None:
            return by_text
    m = _letter_at(text, lower=not weak)
    if m is None or weak and not _CLAUSE_END.match(text, m.end("letter")):
        return None
    return _chosen(m, text, options)


def _letter_or_text(content: str, options: dict[str, str]) -> Parsed | None:
    """The reply is a letter (`c`, `(C)`, `Option C.`), starts with one and a delimiter
    (`C. Glomerulus`, `(C) Glomerulus`, `C: Glomerulus`), ends with a line that is a letter, or names
    an option by its text."""
    m = _letter_at(content)
    if m and (_alone(m, content) or m["letter"].isupper() and (m["open"] or m["close"])):
        return _chosen(m, content, options)
    last = content.rsplit("\n", 1)[-1]
    m = _letter_at(last) if last != content else None
    if m and m["letter"].isupper() and _alone(m, last):
        return _chosen(m, last, options)
    return _by_option_text(content, options)


def _alone(m: re.Match, text: str) -> bool:
    return not re.search(r"[^\W_]", text[m.end():])


def _option_texts(options: dict[str, str]) -> dict[str, str]:
    return {k: normalize_answer(v) for k, v in options.items()}


def _text_at(text: str, options: dict[str, str]) -> Parsed | None:
    """The option whose text `text` starts with; 'bladder or kidney' names two."""
    norm = normalize_answer(text)
    texts = _option_texts(options)
    hits = _text_prefix(norm, texts)
    if len(hits) != 1:
        return Parsed(None, "multiple_answers") if hits else None
    rest = re.sub(r"^(?:and|or|y|et|und|o)\s+", "", norm[len(texts[hits[0]]):].strip())
    if set(_text_prefix(rest, texts)) - set(hits):
        return Parsed(None, "multiple_answers")
    return Parsed(hits[0], None)


def _text_prefix(norm: str, texts: dict[str, str]) -> list[str]:
    """Options whose text `norm` starts with, the longest only ('kidney stone' over 'kidney')."""
    hits = [k for k, t in texts.items() if t and (norm == t or len(t) > 2 and norm.startswith(t + " "))]
    longest = max((len(texts[k]) for k in hits), default=0)
    return [k for k in hits if len(texts[k]) == longest]


def _by_option_text(body: str, options: dict[str, str]) -> Parsed | None:
    norm = normalize_answer(body)
    if not norm:
        return None
    texts = _option_texts(options)
    exact = [k for k, t in texts.items() if t and t == norm]
    if len(exact) == 1:
        return Parsed(exact[0], None)
    if len(exact) > 1:
        return Parsed(None, "multiple_answers")
    padded = f" {norm} "
    found = [k for k, t in texts.items() if len(t) > 2 and f" {t} " in padded]
    # "kidney" inside a matched "kidney stone" is that option's text, not a second answer
    found = [k for k in found if not any(k != o and texts[k] in texts[o] for o in found)]
    if len(found) == 1:
        return Parsed(found[0], None)
    if len(found) > 1:
        return Parsed(None, "multiple_answers")
    return None


def _named_letters(body: str, options: dict[str, str]) -> set[str]:
    """Options the reply names and does not rule out: `option X` anywhere, a capital letter standing
    alone only in a short reply (in longer prose 'vitamin C' or 'hepatitis B' is not an answer)."""
    short = len(body.split()) <= SHORT_REPLY_WORDS
    named = set()
    for m in _LETTER.finditer(body):
        if not (m["option"] or short and m["letter"].isupper()) or _is_word(m, body) or _rejected(m, body):
            continue
        if m["letter"].upper() in options:
            named.add(m["letter"].upper())
    return named


def parse_choice(text: str | None, options: dict[str, str]) -> Parsed:
    """The option letter a free-text reply chooses (see module docstring for the rules)."""
    body, failure = prepare(text)
    if failure:
        return Parsed(None, failure)
    for rule, pattern in (("answer_tag", _ANSWER_TAG), ("boxed", _BOXED)):
        found = pattern.findall(body)
        if found:
            got = _letter_or_text(found[-1].strip(), options)
            if got is not None:
                return dataclasses.replace(got, rule=rule)
    # the last statement that says something wins: a model walks through the options, then concludes
    for m in reversed(list(_STATEMENT.finditer(body))):
        line = body[m.end():m.end() + _STATED_CHARS].split("\n", 1)[0]
        got = _stated(line, options, weak=m["weak"] is not None)
        if got is not None:
            return dataclasses.replace(got, rule="answer_statement")
    correct = [m.group(1) for m in _IS_CORRECT.finditer(body) if m.group(1) in options]
    if correct:
        return Parsed(correct[-1], None, "is_correct")
    got = _letter_or_text(body, options)
    if got is not None:
        return dataclasses.replace(got, rule="leading_letter_or_text")
    named = _named_letters(body, options)
    if len(named) == 1:
        return Parsed(named.pop(), None, "named_letter")
    if len(named) > 1:
        return Parsed(None, "multiple_answers", "named_letter")
    return Parsed(None, "no_answer")


# ---- yes / no / maybe -----------------------------------------------------------------------
# Other languages' label words (lower-case, NFKC). Longer entries first where one prefixes another.
LABEL_WORDS = {
    "yes": ("yes", "sí", "si", "oui", "ja", "да", "sim", "是的", "是", "对", "有"),
    "no": ("no", "non", "nein", "нет", "não", "nao", "不是", "没有", "否", "无"),
    "maybe": ("maybe", "perhaps", "possibly", "quizás", "quizas", "tal vez", "peut-être", "vielleicht",
              "может быть", "talvez", "不确定", "可能", "也许"),
}
_WORD_LABEL = {w: lab for lab, words in LABEL_WORDS.items() for w in words}
_CJK_PREFIXES = sorted(((w, lab) for w, lab in _WORD_LABEL.items() if not w.isascii()
                        and not re.match(r"[a-zà-ÿа-я]", w)), key=lambda p: -len(p[0]))
_LABEL_STMT = re.compile(rf"(?i:final\s+answer|answer|decision|conclusion|答案|respuesta|réponse|antwort|ответ)"
                         rf"{_LINK}[(\[]*([^\W\d_]+)")


def _label_of(word: str, labels: tuple[str, ...]) -> str | None:
    lab = _WORD_LABEL.get(word.lower().strip(string.punctuation + "*_ "))
    if lab is None:
        for prefix, plab in _CJK_PREFIXES:
            if word.startswith(prefix):
                lab = plab
                break
    return lab if lab in labels else None


def parse_label(text: str | None, labels: tuple[str, ...] = ("yes", "no", "maybe")) -> Parsed:
    """yes / no / maybe from a free-text reply."""
    body, failure = prepare(text)
    if failure:
        return Parsed(None, failure)
    for rule, pattern in (("answer_tag", _ANSWER_TAG), ("boxed", _BOXED)):
        found = pattern.findall(body)
        if found:
            words = found[-1].split()
            lab = _label_of(words[0], labels) if words else None
            if lab:
                return Parsed(lab, None, rule)
    stmts = [m.group(1) for m in _LABEL_STMT.finditer(body)]
    if stmts:
        lab = _label_of(stmts[-1], labels)
        if lab:
            return Parsed(lab, None, "answer_statement")
    words = re.findall(r"[^\W_]+(?:-[^\W_]+)?", body)
    if words:
        lab = _label_of(words[0], labels)
        if lab:
            return Parsed(lab, None, "first_word")
    if len(words) <= SHORT_REPLY_WORDS * 2:
        # "not yes, no": a label the reply rules out is not its answer
        found = {lab for before, w in zip([""] + words, words)
                 if before.lower() != "not" and (lab := _WORD_LABEL.get(w.lower())) in labels}
        if len(found) == 1:
            return Parsed(found.pop(), None, "lone_label")
        if len(found) > 1:
            return Parsed(None, "multiple_answers")
    return Parsed(None, "no_answer")


# ---- short open answers ---------------------------------------------------------------------
_ANSWER_LINE = re.compile(r"(?i:final\s+answer|answer|答案|respuesta|réponse|antwort|ответ)\s*[:：]\s*(.+)")


def extract_open(text: str | None) -> Parsed:
    """The answer phrase of a short-answer reply."""
    body, failure = prepare(text)
    if failure:
        return Parsed(None, failure)
    for rule, pattern in (("answer_tag", _ANSWER_TAG), ("boxed", _BOXED)):
        found = [f.strip() for f in pattern.findall(body) if f.strip()]
        if found:
            return Parsed(_clean_phrase(found[-1]), None, rule)
    lines = _ANSWER_LINE.findall(body)
    if lines and _clean_phrase(lines[-1]):
        return Parsed(_clean_phrase(lines[-1]), None, "answer_statement")
    first = next((ln for ln in body.splitlines() if ln.strip()), "")
    phrase = _clean_phrase(first)
    return Parsed(phrase, None, "first_line") if phrase else Parsed(None, "empty")


def _clean_phrase(s: str) -> str:
    return s.strip().strip("*_`\"'").strip().rstrip(".").strip()


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(rf"[{re.escape(string.punctuation)}“”‘’«»。，、：；！？（）]")


def normalize_answer(s: str) -> str:
    """SQuAD normalization (lower case, no punctuation, no articles, single spaces) after NFKC."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = _PUNCT.sub(" ", s)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


# ---- numbers with units ---------------------------------------------------------------------
_UNITS = {  # unit -> (dimension, factor to the base unit)
    "mg": ("mass", 1e-3), "g": ("mass", 1.0), "gm": ("mass", 1.0), "kg": ("mass", 1e3),
    "mcg": ("mass", 1e-6), "ug": ("mass", 1e-6), "µg": ("mass", 1e-6), "μg": ("mass", 1e-6),
    "mm": ("length", 1e-3), "cm": ("length", 1e-2), "m": ("length", 1.0), "in": ("length", 0.0254),
    "ml": ("volume", 1e-3), "dl": ("volume", 0.1), "l": ("volume", 1.0),
    "ms": ("time", 1e-3), "s": ("time", 1.0), "sec": ("time", 1.0), "seconds": ("time", 1.0),
    "min": ("time", 60.0), "mins": ("time", 60.0), "minute": ("time", 60.0), "minutes": ("time", 60.0),
    "h": ("time", 3600.0), "hr": ("time", 3600.0), "hrs": ("time", 3600.0), "hour": ("time", 3600.0),
    "hours": ("time", 3600.0), "day": ("time", 86400.0), "days": ("time", 86400.0),
    "week": ("time", 604800.0), "weeks": ("time", 604800.0),
    "%": ("percent", 1.0), "percent": ("percent", 1.0), "mmhg": ("pressure", 1.0),
    "bpm": ("rate", 1.0), "meq": ("amount", 1.0), "mmol": ("amount", 1e-3), "mol": ("amount", 1.0),
}
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"])}
_QUANTITY = re.compile(r"(?<![\w.])(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)\s*(%|[^\W\d_]+(?:/[^\W\d_]+)?)?")


@dataclasses.dataclass(frozen=True)
class Quantity:
    raw: float
    dimension: str | None
    base: float


def quantities(s: str) -> list[Quantity]:
    """Numbers in `s` with their units (when known), e.g. '2.5cm x 17 mm' -> 2.5 cm, 17 mm."""
    s = unicodedata.normalize("NFKC", s)
    s = re.sub(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", lambda m: _NUMBER_WORDS[m.group(1).lower()], s,
               flags=re.IGNORECASE)
    out = []
    for num, unit in _QUANTITY.findall(s):
        value = float(num.replace(",", ""))
        dim, factor = _UNITS.get(unit.lower(), (None, 1.0)) if unit else (None, 1.0)
        out.append(Quantity(value, dim, value * factor))
    return out


def is_numeric_answer(s: str) -> bool:
    """True when `s` is numbers and units only ('12', '2.5cm x 1.7cm', '10-20 minutes')."""
    if not quantities(s):
        return False
    rest = _QUANTITY.sub(lambda m: "" if not m.group(2) or m.group(2).lower() in _UNITS else m.group(2), s)
    rest = re.sub(r"\b(?:x|by|to|and|or)\b|[x×\-–~/,]", " ", normalize_answer(rest))
    return not rest.strip()


def quantities_match(pred: str, gold: str, rel_tol: float = 1e-6) -> bool:
    """Same numbers in the same order; units converted when both sides give one of one dimension.
    A bare number matches a number with a unit (the question usually names the unit)."""
    qp, qg = quantities(pred), quantities(gold)
    if not qg or len(qp) != len(qg):
        return False
    for p, g in zip(qp, qg):
        if p.dimension and g.dimension:
            if p.dimension != g.dimension or not _close(p.base, g.base, rel_tol):
                return False
        elif not _close(p.raw, g.raw, rel_tol):
            return False
    return True


def _close(a: float, b: float, rel_tol: float) -> bool:
    return abs(a - b) <= rel_tol * max(abs(a), abs(b), 1e-12)
