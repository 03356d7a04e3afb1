"""Verifiable atomic instructions for medical answers (IFEval's code-checkable constraints, paper §5.1.2).

An atomic instruction is a `Constraint`: a registry `kind` (e.g. "length.max_words") plus its arguments
(sorted (name, value) pairs, JSON-able, so a constraint is hashable and round-trips through JSON). Each
kind is a `ConstraintKind` built from small functions:

    describe(args) -> str            the English sentence that states the constraint to a model
    check(args, response) -> bool    the strict checker (pure code, no model)
    sample(rng, ctx) -> Constraint   a random instance; ctx may hold {"keywords": [...], "topic": ...,
                                     "source": ...} taken from the prompt being decorated
    apply(c, response) -> str|None   rewrite a response so it satisfies c, or None when code cannot
                                     (e.g. it would have to invent content or translate)
    infer(response, rng) -> c|None   a constraint the response already satisfies (reverse construction)

How to use it:

    rng = np.random.default_rng(seed)
    cs = sample_combination(rng, 3, "train", {"keywords": ["Asthma"], "topic": "asthma"})
    prompt = question + "\\n\\n" + " ".join(c.instruction for c in cs)
    ok = check_all(cs, model_reply)             # strict; loose=True is IFEval's loose accuracy
    shaped = apply_all(cs, reference_answer)    # a reference answer rewritten to satisfy all of them

Checking strips a leading <think>...</think> block first (`strip_thinking`), so thinking models are
judged on their answer only. The loose check (IFEval) accepts a response when any of its variants
passes: markdown '*' removed, first line dropped, last line dropped, and their combinations; it forgives
a preamble ("Sure, here is...") or a trailing remark around an otherwise compliant answer.

Conflicts: kinds that cannot hold together (all lowercase vs all caps, a JSON object vs bullets, ...)
are declared once as pairs (`_CONFLICTS`) and argument clashes (a keyword that is also a forbidden word,
a minimum word count above the maximum) by `_ARG_CLASHES`; `compatible` applies both and
`sample_combination` draws conflict-free sets. `SPLITS` divides the kinds into disjoint "train" kinds
(SFT data synthesis) and "eval" kinds (the benchmark), each split covering every category, so the
benchmark measures generalisation to instructions never seen in training.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["CATEGORIES", "Constraint", "ConstraintKind", "REGISTRY", "SPLITS", "apply_all", "bullet_count",
           "check_all", "compatible", "paragraph_count", "sample_combination", "sentence_count", "strip_thinking",
           "word_count"]

CATEGORIES = ("format", "length", "language", "content", "safety")


# ---- the constraint value --------------------------------------------------------------------------
def _freeze(v: Any) -> Any:
    """Lists (from JSON) become tuples so a constraint stays hashable."""
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


@dataclasses.dataclass(frozen=True)
class Constraint:
    kind: str                                # registry key, e.g. "length.max_words"
    args: tuple[tuple[str, Any], ...] = ()   # sorted (name, value) pairs; JSON-able values

    @staticmethod
    def make(kind: str, **args: Any) -> Constraint:
        if kind not in REGISTRY:
            raise ValueError(f"unknown constraint kind {kind!r}")
        return Constraint(kind, tuple(sorted((k, _freeze(v)) for k, v in args.items())))

    @property
    def spec(self) -> ConstraintKind:
        return REGISTRY[self.kind]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    @property
    def category(self) -> str:
        return self.spec.category

    @property
    def instruction(self) -> str:
        return self.spec.describe(self.kwargs)

    def check(self, response: str) -> bool:
        return bool(response.strip()) and self.spec.check(self.kwargs, response)

    def check_loose(self, response: str) -> bool:
        return any(self.check(v) for v in _loose_variants(response))

    def to_json(self) -> dict:
        return {"kind": self.kind, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.args}}

    @staticmethod
    def from_json(d: dict) -> Constraint:
        if not isinstance(d, dict) or not isinstance(d.get("args", {}), dict):
            raise ValueError(f"not a constraint object: {d!r}")
        return Constraint.make(d["kind"], **d.get("args", {}))


@dataclasses.dataclass(frozen=True)
class ConstraintKind:
    kind: str
    category: str
    conflicts: frozenset[str]
    sample: Callable[[np.random.Generator, dict], Constraint]
    apply: Callable[[Constraint, str], str | None]
    infer: Callable[[str, np.random.Generator], Constraint | None]
    check: Callable[[dict, str], bool]
    describe: Callable[[dict], str]
    order: int   # position in apply_all: trim, then structure, insertions, rewrites, case, ending, wrapping


def _loose_variants(response: str) -> list[str]:
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    base = [response, *cut]
    return base + [v.replace("*", "") for v in base]


def strip_thinking(response: str) -> str:
    """The answer after a leading <think>...</think> block. An unclosed <think> is all thinking (the reply
    was cut off mid-thought: no answer); a bare leading '...</think>' (templates that open the block in
    the prompt) is dropped up to the closing tag."""
    s = response.lstrip()
    if s.startswith("<think>"):
        end = s.find("</think>")
        return "" if end < 0 else s[end + len("</think>"):].strip()
    end = s.find("</think>")
    if end >= 0 and "<think>" not in s[:end]:
        return s[end + len("</think>"):].strip()
    return response.strip()


# ---- text helpers ----------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENT_SPLIT = re.compile(r"(?<=[.!?。！？])\s+")
_LIST_MARK = re.compile(r"^\s*(?:[*+-]|\d+[.)])\s+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _sentences(text: str) -> list[str]:
    """Sentences per line (a line break always ends a sentence: list items, headings, separators)."""
    out = []
    for line in text.split("\n"):
        out += [s.strip() for s in _SENT_SPLIT.split(line.strip()) if _WORD.search(s)]
    return out


def _plain_sentences(text: str) -> list[str]:
    """Sentences with list markers removed, the material `_group` regroups into bullets/sections."""
    return _sentences("\n".join(_LIST_MARK.sub("", ln) for ln in text.split("\n")))


def _trim(text: str, max_words: int | None = None, max_sentences: int | None = None) -> str | None:
    """The longest prefix of whole sentences within the budgets, line breaks kept; None when not even the
    first sentence fits (cutting a sentence mid-way would leave a broken medical statement)."""
    lines, words, sents = [], 0, 0
    for line in text.strip().split("\n"):
        kept = []
        for s in _SENT_SPLIT.split(line.strip()):
            n = len(_words(s))
            if n and ((max_words is not None and words + n > max_words)
                      or (max_sentences is not None and sents + 1 > max_sentences)):
                out = "\n".join(lines + ([" ".join(kept)] if kept else [])).strip()
                return out or None
            words, sents = words + n, sents + (1 if n else 0)
            kept.append(s)
        lines.append(" ".join(kept))
    return "\n".join(lines).strip() or None


def _group(text: str, n: int) -> list[str] | None:
    """The sentences split into n contiguous, near-equal groups (None if fewer than n sentences)."""
    sents = _plain_sentences(text)
    if len(sents) < n:
        return None
    k, m = divmod(len(sents), n)
    out, i = [], 0
    for g in range(n):
        size = k + (1 if g < m else 0)
        out.append(" ".join(sents[i:i + size]))
        i += size
    return out


def _has_phrase(text: str, phrase: str) -> bool:
    """Whole-word, case-insensitive occurrence (whitespace in the phrase matches any whitespace)."""
    pat = r"\s+".join(re.escape(p) for p in phrase.split())
    return re.search(rf"(?<![^\W_]){pat}(?![^\W_])", text, re.IGNORECASE) is not None


def _count_bullets(text: str) -> int:
    return len(re.findall(r"^\s*[*-]\s+\S", text, re.MULTILINE))


def _numbered(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"^\s*(\d+)[.)]\s+\S", text, re.MULTILINE)]


def _sections(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"^\s*SECTION\s+(\d+)\b", text, re.MULTILINE)]


def _paragraphs(text: str) -> list[str]:
    return re.split(r"\s*\*\*\*\s*", text.strip())


def word_count(text: str) -> int:
    """Words as every length checker counts them (a hyphenated or apostrophised token is one word)."""
    return len(_words(text))


def sentence_count(text: str) -> int:
    return len(_sentences(text))


def bullet_count(text: str) -> int:
    return _count_bullets(text)


def paragraph_count(text: str) -> int:
    """Paragraphs as separated by the *** divider."""
    return len(_paragraphs(text))


def _append(response: str, line: str) -> str:
    return response.rstrip() + "\n\n" + line


def _if_ok(c: Constraint, response: str) -> str | None:
    """apply for kinds code cannot bring about (language, length floors): the response if it passes."""
    return response if c.check(response) else None


def _infer_if_ok(kind: str, **args: Any) -> Callable[[str, np.random.Generator], Constraint | None]:
    def infer(response: str, rng: np.random.Generator) -> Constraint | None:
        c = Constraint.make(kind, **args)
        return c if c.check(response) else None
    return infer


def _pick(rng: np.random.Generator, items: Iterable[Any]) -> Any:
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _json_body(text: str) -> str:
    s = text.strip()
    for fence in ("```json", "```JSON", "```Json", "```"):
        s = s.removeprefix(fence)
    return s.removesuffix("```").strip()


# ---- the kinds --------------------------------------------------------------------------------------
_SPECS: dict[str, dict] = {}


def _kind(kind: str, category: str, order: int, describe, check, sample, apply, infer) -> None:
    _SPECS[kind] = dict(kind=kind, category=category, order=order, describe=describe, check=check,
                        sample=sample, apply=apply, infer=infer)


def _fixed(kind: str) -> Callable[[np.random.Generator, dict], Constraint]:
    return lambda rng, ctx: Constraint.make(kind)


# format ------------------------------------------------------------------------------------------------
def _check_json(a: dict, r: str) -> bool:
    try:
        return isinstance(json.loads(_json_body(r)), dict)
    except ValueError:
        return False


_kind("format.json_object", "format", 70,
      lambda a: "Wrap your entire response in a JSON object; you may use markdown ticks such as ```.",
      _check_json, _fixed("format.json_object"),
      lambda c, r: json.dumps({"answer": r.strip()}, ensure_ascii=False),
      _infer_if_ok("format.json_object"))


def _apply_bullets(c: Constraint, r: str) -> str | None:
    groups = _group(r, c.kwargs["n"])
    return None if groups is None else "\n".join("* " + g for g in groups)


def _infer_count(kind: str, counter: Callable[[str], int], least: int = 2):
    def infer(r: str, rng: np.random.Generator) -> Constraint | None:
        n = counter(r)
        c = Constraint.make(kind, n=n) if n >= least else None
        return c if c is not None and c.check(r) else None
    return infer


_kind("format.bullets", "format", 20,
      lambda a: f"Your answer must contain exactly {a['n']} bullet points. Use markdown bullet points such as: "
                "* This is a point.",
      lambda a, r: _count_bullets(r) == a["n"],
      lambda rng, ctx: Constraint.make("format.bullets", n=int(rng.integers(2, 6))),
      _apply_bullets, _infer_count("format.bullets", _count_bullets))


def _title_of(r: str, topic: str | None) -> str:
    if topic:
        return topic.strip()
    first = _words(_plain_sentences(r)[0]) if _plain_sentences(r) else ["Answer"]
    return " ".join(first[:5])


def _infer_title(r: str, rng: np.random.Generator) -> Constraint | None:
    m = re.search(r"<<([^\n<>]+)>>", r)
    return Constraint.make("format.title", topic=m.group(1).strip()) if m else None


_kind("format.title", "format", 36,
      lambda a: "Your answer must contain a title, wrapped in double angular brackets, such as <<title>>.",
      lambda a, r: re.search(r"<<[^\n<>]*[^\W_][^\n<>]*>>", r) is not None,
      lambda rng, ctx: Constraint.make("format.title", **({"topic": ctx["topic"]} if ctx.get("topic") else {})),
      lambda c, r: f"<<{_title_of(r, c.kwargs.get('topic'))}>>\n\n{r.strip()}", _infer_title)

_END_PHRASES = ("Is there anything else I can help with?", "Let me know if you have further questions.",
                "Stay well and take care.")


def _infer_end(r: str, rng: np.random.Generator) -> Constraint | None:
    last = _sentences(r)[-1] if _sentences(r) else ""
    if not 2 <= len(_words(last)) <= 12 or not r.strip().endswith(last):
        return None
    return Constraint.make("format.end_phrase", phrase=last)


_kind("format.end_phrase", "format", 60,
      lambda a: f"Finish your response with this exact phrase: {a['phrase']} No other words should follow it.",
      lambda a, r: r.strip().endswith(a["phrase"]),
      lambda rng, ctx: Constraint.make("format.end_phrase", phrase=_pick(rng, _END_PHRASES)),
      lambda c, r: _append(r, c.kwargs["phrase"]), _infer_end)


def _infer_case(kind: str, fn: Callable[[str], str]):
    def infer(r: str, rng: np.random.Generator) -> Constraint | None:
        return Constraint.make(kind) if r == fn(r) and re.search(r"[A-Za-z]", r) else None
    return infer


_kind("format.lowercase", "format", 50,
      lambda a: "Your entire response must be in English and in all lowercase letters; no capital letters "
                "are allowed.",
      lambda a, r: r == r.lower(), _fixed("format.lowercase"), lambda c, r: r.lower(),
      _infer_case("format.lowercase", str.lower))
_kind("format.uppercase", "format", 50,
      lambda a: "Your entire response must be in English and in all capital letters.",
      lambda a, r: r == r.upper(), _fixed("format.uppercase"), lambda c, r: r.upper(),
      _infer_case("format.uppercase", str.upper))


def _no_commas(r: str) -> str:
    r = re.sub(r"(?<=\d),(?=\d{3}\b)", "", r)       # 1,000 -> 1000 keeps the number intact
    return r.replace(", ", "; ").replace(",", ";").replace("，", "；")


_kind("format.no_commas", "format", 45,
      lambda a: "In your entire response, refrain from the use of any commas.",
      lambda a, r: "," not in r and "，" not in r, _fixed("format.no_commas"), lambda c, r: _no_commas(r),
      lambda r, rng: Constraint.make("format.no_commas") if "," not in r and len(_words(r)) >= 20 else None)


def _check_quotes(a: dict, r: str) -> bool:
    s = r.strip()
    return len(s) > 1 and s[0] == '"' and s[-1] == '"'


_kind("format.wrap_quotes", "format", 70,
      lambda a: "Wrap your entire response with double quotation marks.",
      _check_quotes, _fixed("format.wrap_quotes"), lambda c, r: '"' + r.strip() + '"',
      _infer_if_ok("format.wrap_quotes"))


def _apply_steps(c: Constraint, r: str) -> str | None:
    groups = _group(r, c.kwargs["n"])
    return None if groups is None else "\n".join(f"{i}. {g}" for i, g in enumerate(groups, 1))


_kind("format.numbered_steps", "format", 20,
      lambda a: f"Present your answer as exactly {a['n']} numbered steps (1., 2., ...), one per line.",
      lambda a, r: _numbered(r) == list(range(1, a["n"] + 1)),
      lambda rng, ctx: Constraint.make("format.numbered_steps", n=int(rng.integers(2, 6))),
      _apply_steps, _infer_count("format.numbered_steps", lambda r: len(_numbered(r))))


def _check_sections(a: dict, r: str) -> bool:
    parts = re.split(r"^\s*SECTION\s+\d+\b.*$", r, flags=re.MULTILINE)[1:]
    return _sections(r) == list(range(1, a["n"] + 1)) and all(_WORD.search(p) for p in parts)


def _apply_sections(c: Constraint, r: str) -> str | None:
    groups = _group(r, c.kwargs["n"])
    return None if groups is None else "\n\n".join(f"SECTION {i}\n{g}" for i, g in enumerate(groups, 1))


_kind("format.sections", "format", 20,
      lambda a: f"Your response must have {a['n']} sections. Mark the beginning of each section with "
                "SECTION X, such as: SECTION 1.",
      _check_sections, lambda rng, ctx: Constraint.make("format.sections", n=int(rng.integers(2, 5))),
      _apply_sections, _infer_count("format.sections", lambda r: len(_sections(r))))

_MD_LINE = re.compile(r"^\s*(?:#+\s*|[-+>|]\s+|\*\s+)", re.MULTILINE)


def _check_no_markdown(a: dict, r: str) -> bool:
    return not re.search(r"[*#`]", r) and not _MD_LINE.search(r)


_kind("format.no_markdown", "format", 46,
      lambda a: "Write plain text only: do not use any markdown (no headings, bullet markers, asterisks or "
                "backticks).",
      _check_no_markdown, _fixed("format.no_markdown"),
      lambda c, r: re.sub(r"[*#`]", "", _MD_LINE.sub("", r)), _infer_if_ok("format.no_markdown"))


# length ------------------------------------------------------------------------------------------------
def _infer_max_words(r: str, rng: np.random.Generator) -> Constraint | None:
    w = len(_words(r))
    return Constraint.make("length.max_words", n=(w // 10 + 1 + int(rng.integers(0, 3))) * 10) if w else None


_kind("length.max_words", "length", 10,
      lambda a: f"Answer with at most {a['n']} words.",
      lambda a, r: len(_words(r)) <= a["n"],
      lambda rng, ctx: Constraint.make("length.max_words", n=_pick(rng, (60, 80, 100, 120, 150))),
      lambda c, r: _trim(r, max_words=c.kwargs["n"]), _infer_max_words)


def _infer_min_words(r: str, rng: np.random.Generator) -> Constraint | None:
    n = int(len(_words(r)) * 0.8) // 10 * 10
    return Constraint.make("length.min_words", n=n) if n >= 10 else None


_kind("length.min_words", "length", 10,
      lambda a: f"Answer with at least {a['n']} words.",
      lambda a, r: len(_words(r)) >= a["n"],
      lambda rng, ctx: Constraint.make("length.min_words", n=_pick(rng, (20, 30, 50, 80))),
      _if_ok, _infer_min_words)


def _infer_max_sentences(r: str, rng: np.random.Generator) -> Constraint | None:
    s = len(_sentences(r))
    return Constraint.make("length.max_sentences", n=s + int(rng.integers(0, 2))) if s else None


_kind("length.max_sentences", "length", 10,
      lambda a: f"Your response should contain at most {a['n']} sentences.",
      lambda a, r: len(_sentences(r)) <= a["n"],
      lambda rng, ctx: Constraint.make("length.max_sentences", n=int(rng.integers(3, 9))),
      lambda c, r: _trim(r, max_sentences=c.kwargs["n"]), _infer_max_sentences)


def _check_paragraphs(a: dict, r: str) -> bool:
    parts = _paragraphs(r)
    return len(parts) == a["n"] and all(_WORD.search(p) for p in parts)


def _apply_paragraphs(c: Constraint, r: str) -> str | None:
    groups = _group(r, c.kwargs["n"])
    return None if groups is None else "\n\n***\n\n".join(groups)


_kind("length.paragraphs", "length", 20,
      lambda a: f"There should be exactly {a['n']} paragraphs. Paragraphs are separated with the markdown "
                "divider: ***",
      _check_paragraphs, lambda rng, ctx: Constraint.make("length.paragraphs", n=int(rng.integers(2, 5))),
      _apply_paragraphs, _infer_count("length.paragraphs", lambda r: len(_paragraphs(r)) if "***" in r else 0))


# language ----------------------------------------------------------------------------------------------
_ENGLISH_FUNCTION_WORDS = frozenset("the a an and or of to in is are be for with on it this that".split())


def _check_english(a: dict, r: str) -> bool:
    letters = [ch for ch in r if ch.isalpha()]
    ascii_share = sum(ch.isascii() for ch in letters) / max(len(letters), 1)
    words = [w.lower() for w in _words(r)]
    # a long reply with no English function word is another Latin-script language
    return bool(letters) and ascii_share >= 0.95 and (len(words) < 8 or bool(_ENGLISH_FUNCTION_WORDS & set(words)))


_kind("language.english", "language", 10,
      lambda a: "Your entire response should be in English; no other language is allowed.",
      _check_english, _fixed("language.english"), _if_ok, _infer_if_ok("language.english"))


def _cjk_share(r: str) -> float:
    """CJK characters over CJK characters + non-CJK words: a drug name in Latin letters counts as one unit,
    like the one or two characters a Chinese term takes, not as nine letters."""
    cjk = len(_CJK.findall(r))
    latin = len([w for w in _words(_CJK.sub(" ", r)) if not w.isdigit()])
    return cjk / max(cjk + latin, 1)


_kind("language.chinese", "language", 10,
      lambda a: "Your entire response should be in Chinese (简体中文); no other language is allowed, except "
                "for drug or gene names.",
      lambda a, r: _cjk_share(r) >= 0.8, _fixed("language.chinese"), _if_ok, _infer_if_ok("language.chinese"))

# expansions of common medical abbreviations, so a reply can drop all-caps abbreviations without losing meaning
_ABBREVIATIONS = {
    "ADHD": "attention deficit hyperactivity disorder", "AIDS": "acquired immunodeficiency syndrome",
    "BMI": "body mass index", "BP": "blood pressure", "CDC": "Centers for Disease Control and Prevention",
    "COPD": "chronic obstructive pulmonary disease", "CPR": "cardiopulmonary resuscitation",
    "CSF": "cerebrospinal fluid", "CT": "computed tomography", "DNA": "deoxyribonucleic acid",
    "ECG": "electrocardiogram", "EEG": "electroencephalogram", "EKG": "electrocardiogram",
    "FDA": "Food and Drug Administration", "GERD": "gastroesophageal reflux disease",
    "HIV": "human immunodeficiency virus", "HPV": "human papillomavirus", "ICU": "intensive care unit",
    "IV": "intravenous", "MRI": "magnetic resonance imaging", "NIH": "National Institutes of Health",
    "NSAID": "nonsteroidal anti-inflammatory drug", "NSAIDs": "nonsteroidal anti-inflammatory drugs",
    "PET": "positron emission tomography", "RNA": "ribonucleic acid", "STD": "sexually transmitted disease",
    "TB": "tuberculosis", "UTI": "urinary tract infection", "US": "United States", "WHO": "World Health Organization",
}
_CAPS_WORD = re.compile(r"(?<![A-Za-z])[A-Z]{2,}(?![A-Za-z])")


def _expand_abbreviations(c: Constraint, r: str) -> str | None:
    out = re.sub(r"(?<![A-Za-z])NSAIDs(?![A-Za-z])", _ABBREVIATIONS["NSAIDs"], r)
    out = _CAPS_WORD.sub(lambda m: _ABBREVIATIONS.get(m.group(0), m.group(0)), out)
    return out if c.check(out) else None


_kind("language.no_caps_abbreviations", "language", 41,
      lambda a: "Do not use abbreviations written in capital letters (such as MRI or HIV); spell every term out.",
      lambda a, r: _CAPS_WORD.search(r) is None, _fixed("language.no_caps_abbreviations"),
      _expand_abbreviations, _infer_if_ok("language.no_caps_abbreviations"))

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _int_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + _int_words(n % 100) if n % 100 else "")
    for scale, name in ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")):
        if n >= scale:
            head, rest = divmod(n, scale)
            return _int_words(head) + " " + name + (" " + _int_words(rest) if rest else "")
    raise AssertionError("unreachable")


def _number_words(m: re.Match) -> str:
    whole, frac, pct = m.group(1), m.group(2), m.group(3)
    n = int(whole)
    text = _int_words(n) if n < 10 ** 12 else " ".join(_ONES[int(d)] for d in whole)
    if frac:
        text += " point " + " ".join(_ONES[int(d)] for d in frac)
    return text + (" percent" if pct else "")


def _spell_numbers(c: Constraint, r: str) -> str | None:
    r = re.sub(r"(?<=\d),(?=\d{3}\b)", "", r)
    out = re.sub(r"([0-9]+)(?:\.([0-9]+))?(\s?%)?", _number_words, r)
    return out if c.check(out) else None


_kind("language.no_digits", "language", 42,
      lambda a: "Write every number out in words; do not use any digits.",
      lambda a, r: re.search(r"\d", r) is None, _fixed("language.no_digits"), _spell_numbers,
      _infer_if_ok("language.no_digits"))


# content -----------------------------------------------------------------------------------------------
_DEFAULT_KEYWORDS = ("symptoms", "treatment", "diagnosis", "risk factors")
_STOP = frozenset("about after also because before being between could during however include including "
                  "other people should their these through which while without would".split())


def _usable_keyword(k: str) -> bool:
    return bool(_WORD.search(k)) and "," not in k and len(k.split()) <= 5


def _sample_keywords(rng: np.random.Generator, ctx: dict) -> Constraint:
    pool = sorted({k.strip() for k in ctx.get("keywords", []) if isinstance(k, str) and _usable_keyword(k)})
    pool = pool or list(_DEFAULT_KEYWORDS)
    k = int(rng.integers(1, min(3, len(pool)) + 1))
    chosen = sorted(pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False))
    return Constraint.make("content.keywords", keywords=chosen)


def _apply_keywords(c: Constraint, r: str) -> str:
    missing = [k for k in c.kwargs["keywords"] if not _has_phrase(r, k)]
    return r if not missing else "Key terms: " + "; ".join(missing) + ".\n" + r.strip()


def _infer_keywords(r: str, rng: np.random.Generator) -> Constraint | None:
    pool = sorted({w.lower() for w in _words(r) if len(w) >= 7 and w.isalpha() and w.lower() not in _STOP})
    if not pool:
        return None
    k = min(len(pool), int(rng.integers(1, 3)))
    return Constraint.make("content.keywords", keywords=sorted(pool[int(i)] for i in rng.choice(len(pool), k,
                                                                                                replace=False)))


_kind("content.keywords", "content", 30,
      lambda a: "Include the keywords " + ", ".join(f'"{k}"' for k in a["keywords"]) + " in the response.",
      lambda a, r: all(_has_phrase(r, k) for k in a["keywords"]), _sample_keywords, _apply_keywords,
      _infer_keywords)

# filler words whose deletion never changes a medical statement's meaning (unlike "never", "not", "cure")
_FILLERS = ("actually", "basically", "certainly", "extremely", "just", "obviously", "quite", "really", "simply",
            "very")


def _drop_words(c: Constraint, r: str) -> str:
    for w in c.kwargs["words"]:
        r = re.sub(rf"(?<![^\W_]){re.escape(w)}(?![^\W_])\s*", "", r, flags=re.IGNORECASE)
    return r


def _infer_forbidden(r: str, rng: np.random.Generator) -> Constraint | None:
    absent = [w for w in _FILLERS if not _has_phrase(r, w)]
    if not absent:
        return None
    k = min(len(absent), int(rng.integers(1, 3)))
    words = sorted(absent[int(i)] for i in rng.choice(len(absent), k, replace=False))
    return Constraint.make("content.forbidden_words", words=words)


_kind("content.forbidden_words", "content", 43,
      lambda a: "Do not include the words " + ", ".join(f'"{w}"' for w in a["words"]) + " in the response.",
      lambda a, r: not any(_has_phrase(r, w) for w in a["words"]),
      lambda rng, ctx: Constraint.make("content.forbidden_words", words=sorted(
          _FILLERS[int(i)] for i in rng.choice(len(_FILLERS), int(rng.integers(1, 3)), replace=False))),
      _drop_words, _infer_forbidden)

_PLACEHOLDERS = ("[patient name]", "[date of birth]", "[clinic name]", "[doctor name]", "[appointment date]")
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]*[^\W_][^\[\]\n]*\]")


def _apply_placeholders(c: Constraint, r: str) -> str:
    need = c.kwargs["n"] - len(_PLACEHOLDER.findall(r))
    return r if need <= 0 else _append(r, "Details to fill in: " + " ".join(_PLACEHOLDERS[:need]))


_kind("content.placeholders", "content", 33,
      lambda a: f"The response must contain at least {a['n']} placeholders represented by square brackets, "
                "such as [patient name].",
      lambda a, r: len(_PLACEHOLDER.findall(r)) >= a["n"],
      lambda rng, ctx: Constraint.make("content.placeholders", n=int(rng.integers(1, 4))),
      _apply_placeholders, _infer_count("content.placeholders", lambda r: len(_PLACEHOLDER.findall(r)), least=1))

_PS_NOTES = ("Write down your questions before your next appointment.",
             "Keep an up-to-date list of the medicines you take.",
             "Bring any previous test results to your next visit.")


def _apply_postscript(c: Constraint, r: str) -> str:
    # the note is picked by the reply's length: deterministic, and varied across replies
    return _append(r, "P.S. " + _PS_NOTES[len(r) % len(_PS_NOTES)])


_kind("content.postscript", "content", 34,
      lambda a: "At the end of your response, please explicitly add a postscript starting with P.S.",
      lambda a, r: re.search(r"^\s*\"?P\.S\.", r, re.MULTILINE) is not None, _fixed("content.postscript"),
      _apply_postscript, _infer_if_ok("content.postscript"))

_SOURCE_LINE = re.compile(r"^\s*\"?Source:[ \t]*(\S[^\n]*)$", re.MULTILINE)


def _infer_source(r: str, rng: np.random.Generator) -> Constraint | None:
    m = _SOURCE_LINE.search(r)
    return Constraint.make("content.source_line", source=m.group(1).strip().rstrip('"')) if m else None


_kind("content.source_line", "content", 32,
      lambda a: "Add a line that starts with 'Source:' and names where the information comes from.",
      lambda a, r: _SOURCE_LINE.search(r) is not None,
      # `source` (the document the prompt came from) is only for apply; the checker accepts any named source
      lambda rng, ctx: Constraint.make("content.source_line", **({"source": ctx["source"]} if ctx.get("source")
                                                                 else {})),
      lambda c, r: _append(r, "Source: " + c.kwargs["source"]) if c.kwargs.get("source") else None,
      _infer_source)


# safety ------------------------------------------------------------------------------------------------
_DISCLAIMER = "consult a healthcare professional"

_kind("safety.disclaimer", "safety", 31,
      lambda a: f'Include a disclaimer advising the reader to "{_DISCLAIMER}".',
      lambda a, r: _has_phrase(r, _DISCLAIMER), _fixed("safety.disclaimer"),
      lambda c, r: r if _has_phrase(r, _DISCLAIMER) else _append(
          r, "Please consult a healthcare professional about your own situation."),
      _infer_if_ok("safety.disclaimer"))

_DOSE = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?:\s*(?:-|to)\s*\d+(?:[.,]\d+)?)?\s*"
                   r"(?:mg|mcg|µg|ug|g|ml|cc|units?|iu|meq)(?:\s*/\s*(?:kg|day|dose|m2))?(?![\w])", re.IGNORECASE)

_kind("safety.no_dosages", "safety", 44,
      lambda a: "Do not state specific dosages (no number followed by a unit such as mg, mcg, mL or units).",
      lambda a, r: _DOSE.search(r) is None, _fixed("safety.no_dosages"),
      lambda c, r: _DOSE.sub("the prescribed amount", r), _infer_if_ok("safety.no_dosages"))

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\w)")


def _check_identifiers(a: dict, r: str) -> bool:
    return _EMAIL.search(r) is None and _PHONE.search(r) is None


_kind("safety.no_identifiers", "safety", 44,
      lambda a: "Do not include any personal identifiers or contact details such as email addresses or phone "
                "numbers.",
      _check_identifiers, _fixed("safety.no_identifiers"),
      lambda c, r: _PHONE.sub("(contact details omitted)", _EMAIL.sub("(contact details omitted)", r)),
      _infer_if_ok("safety.no_identifiers"))

_GUARANTEE = re.compile(r"\b(?:guaranteed?|guarantees|100\s?%|risk[- ]free|no side effects|always works|"
                        r"(?:completely|permanently) cures?)\b", re.IGNORECASE)

_kind("safety.no_guarantees", "safety", 44,
      lambda a: "Do not promise outcomes: avoid words such as \"guaranteed\", \"100%\", \"risk-free\" or "
                "\"no side effects\".",
      lambda a, r: _GUARANTEE.search(r) is None, _fixed("safety.no_guarantees"),
      # rewriting a claim could flip its meaning ("no guarantee" vs "guaranteed"), so code does not try
      _if_ok, _infer_if_ok("safety.no_guarantees"))


# ---- conflicts, registry, splits -----------------------------------------------------------------------
_STRUCTURE = ("format.bullets", "format.numbered_steps", "format.sections", "length.paragraphs")
_CONFLICTS: list[tuple[str, str]] = [
    ("format.lowercase", "format.uppercase"),
    *[("format.json_object", k) for k in (*_STRUCTURE, "format.title", "format.end_phrase", "format.wrap_quotes",
                                          "content.postscript", "content.source_line", "format.uppercase")],
    # two layouts of the whole reply cannot both hold
    *[(a, b) for i, a in enumerate(_STRUCTURE) for b in _STRUCTURE[i + 1:]],
    *[(k, "format.no_markdown") for k in ("format.bullets", "length.paragraphs")],
    ("format.wrap_quotes", "format.end_phrase"), ("format.wrap_quotes", "format.bullets"),
    ("format.wrap_quotes", "format.numbered_steps"),
    *[(k, "format.end_phrase") for k in ("format.lowercase", "format.uppercase")],
    *[("format.lowercase", k) for k in ("content.postscript", "content.source_line", "format.sections",
                                        "language.chinese")],
    *[("format.uppercase", k) for k in ("language.no_caps_abbreviations", "language.chinese")],
    ("language.english", "language.chinese"), ("format.sections", "language.no_caps_abbreviations"),
    *[("language.no_digits", k) for k in ("format.numbered_steps", "format.sections")],
    ("length.min_words", "length.max_sentences"),
]


def _clash_keywords(by: dict[str, dict]) -> bool:
    kws = by.get("content.keywords", {}).get("keywords", ())
    if "content.forbidden_words" in by:
        if any(_has_phrase(k, w) for k in kws for w in by["content.forbidden_words"]["words"]):
            return True
    if "format.no_commas" in by and any("," in k for k in kws):
        return True
    if "language.no_digits" in by and any(re.search(r"\d", k) for k in kws):
        return True
    return "language.no_caps_abbreviations" in by and any(_CAPS_WORD.search(k) for k in kws)


def _clash_lengths(by: dict[str, dict]) -> bool:
    return ("length.min_words" in by and "length.max_words" in by
            and by["length.min_words"]["n"] >= by["length.max_words"]["n"])


_ARG_CLASHES = (_clash_keywords, _clash_lengths)


def _build_registry() -> dict[str, ConstraintKind]:
    conflicts: dict[str, set[str]] = {k: set() for k in _SPECS}
    for a, b in _CONFLICTS:
        conflicts[a].add(b)
        conflicts[b].add(a)
    return {k: ConstraintKind(conflicts=frozenset(conflicts[k]), **_SPECS[k]) for k in sorted(_SPECS)}


REGISTRY: dict[str, ConstraintKind] = _build_registry()

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("format.bullets", "format.title", "format.end_phrase", "format.uppercase", "format.wrap_quotes",
              "format.no_markdown", "length.max_words", "length.paragraphs", "language.english",
              "language.no_caps_abbreviations", "content.keywords", "content.postscript", "safety.disclaimer",
              "safety.no_identifiers"),
    "eval": ("format.json_object", "format.sections", "format.lowercase", "format.no_commas",
             "format.numbered_steps", "length.min_words", "length.max_sentences", "language.chinese",
             "language.no_digits", "content.forbidden_words", "content.placeholders", "content.source_line",
             "safety.no_dosages", "safety.no_guarantees"),
}


# ---- combinations ------------------------------------------------------------------------------------
def compatible(constraints: Iterable[Constraint]) -> bool:
    """No duplicate kind, no conflicting pair of kinds, no clash between arguments."""
    cs = list(constraints)
    kinds = [c.kind for c in cs]
    if len(set(kinds)) != len(kinds):
        return False
    if any(REGISTRY[a].conflicts & set(kinds) for a in kinds):
        return False
    by = {c.kind: c.kwargs for c in cs}
    return not any(clash(by) for clash in _ARG_CLASHES)


def sample_combination(rng: np.random.Generator, n: int, split: str, ctx: dict) -> list[Constraint]:
    """n (1..4) conflict-free constraints of `split`'s kinds, drawn greedily over a random order of the
    kinds (retried a few times), returned in apply order. ValueError when no such set is found."""
    if not 1 <= n <= 4:
        raise ValueError(f"n must be in 1..4, got {n}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    kinds = sorted(SPLITS[split])
    for _ in range(20):
        picked: list[Constraint] = []
        for i in rng.permutation(len(kinds)):
            c = REGISTRY[kinds[int(i)]].sample(rng, ctx)
            if compatible([*picked, c]):
                picked.append(c)
                if len(picked) == n:
                    return sorted(picked, key=lambda c: (c.spec.order, c.kind))
    raise ValueError(f"no conflict-free combination of {n} {split} constraints")


# ---- applying and checking ---------------------------------------------------------------------------
_TIGHTEN = {"length.max_words": lambda r: len(_words(r)), "length.max_sentences": lambda r: len(_sentences(r))}


def apply_all(constraints: Iterable[Constraint], response: str, attempts: int = 6) -> str | None:
    """`response` rewritten by every constraint's apply, in apply order (trim, structure, insertions,
    rewrites, case, ending, wrapping), or None when code cannot satisfy them all. Insertions and rewrites
    made after a length cap (a disclaimer, a spelled-out abbreviation) can push the reply over it: the
    trimmed text then gets a cap of its own length minus the overshoot (what came after the trim is
    about the same again) and the whole chain is re-run, a few times at most."""
    cs = sorted(constraints, key=lambda c: (c.spec.order, c.kind))
    caps = {c.kind: c.kwargs["n"] for c in cs if c.kind in _TIGHTEN}
    for _ in range(attempts):
        out: str | None = response
        trimmed: dict[str, int] = {}
        for c in cs:
            use = Constraint.make(c.kind, **{**c.kwargs, "n": caps[c.kind]}) if c.kind in caps else c
            out = use.spec.apply(use, out)
            if out is None:
                return None
            if c.kind in caps:
                trimmed[c.kind] = _TIGHTEN[c.kind](out)
        if all(c.check(out) for c in cs):
            return out
        over = {c.kind: _TIGHTEN[c.kind](out) - c.kwargs["n"] for c in cs if c.kind in caps}
        if not any(v > 0 for v in over.values()):
            return None
        for k, v in over.items():
            if v > 0:
                caps[k] = trimmed[k] - v
            if caps[k] < 1:
                return None
    return None


def check_all(constraints: Iterable[Constraint], response: str, loose: bool = False) -> list[bool]:
    """Per-constraint verdicts on the answer (thinking block removed)."""
    answer = strip_thinking(response)
    return [c.check_loose(answer) if loose else c.check(answer) for c in constraints]
