"""Prompt rewriting (paper §5.1.1): expression variants of SFT prompts that keep every medical fact.

    rewriter = make_rewriter(params, client)            # LocalRewriter() or LLMRewriter(client)
    out = rewrite_samples(samples, rewriter, find_entities, params, seed=1234)
    out.kept       # the variant samples (the originals are not in the outcome: the caller keeps them)
    out.rejected   # one record per failed variant, gate "rewrite", reason from `fact_check`

What happens, and why:
1. Selection. Of the samples eligible for rewriting (their pool is in `params.sources`, they are not
   themselves variants or repeats, they have the turns to rewrite), a seeded share `params.share` is
   picked: exactly round(share * n) samples, drawn from the eligible samples sorted by id, so the choice
   depends on the seed and the set of samples, never on their order.
2. Rewriting. Only the FIRST turn of each role in `params.roles` (default: the first user turn) is
   rewritten, and of it only the first text part; image parts, later turns and the assistant's answer are
   never touched (the answer is the training target: a rewrite must not move it). A prompt is split by
   `split_prompt` into the question stem and the rest (the options block "A. ..." with its "Options:"
   header, and trailing answer-format lines such as "Reason step by step, then answer."); only the stem
   is rewritten and the rest is re-attached verbatim, so the answer letter keeps pointing at the same
   option. Up to `params.max_variants` variants per sample, one rewriter call per variant round with a
   seeded numpy Generator for the round.
3. Fact check. Every variant is checked against its original by `fact_check`: an entity name found in
   the original (the stage's `find_entities`, i.e. names the project's KG automaton matches) that is
   missing from the variant, a number or unit token that did not survive, a changed options block, an
   unchanged or empty text each reject the variant with that reason. A text the rewriter could not rewrite
   is "no_rewrite" (detail: the LLM error, if any), a variant equal to an existing sample (same content id)
   "duplicate", one the sample contract refuses "invalid_sample". Nothing is dropped silently: read
   (variants attempted) == kept + rejected.

Two rewriters behind one interface (`Rewriter`):
- `LocalRewriter`: rule-based paraphrase (RULES below, applied in a seeded order, at most `max_rules` per
  prompt). It works on a masked copy of the stem: entity spans, number/unit tokens, quoted strings and
  all-caps abbreviations are replaced by placeholders first, so no rule can touch them, and restored
  after. The rules are templates and heuristics over English question frames, not a language model: they
  cover common exam and consumer phrasings and leave other prompts unchanged (returned as None):
    question_frame   "What is X?" <-> "Could you explain what X is?" (and two other frames)
    which_following  "Which of the following is ..." <-> "Among the options below, which is ..."
    mood             imperative <-> interrogative: "Explain X." <-> "Can you explain X?"
    patient          "a 45-year-old man" -> "a 45-year-old male patient" -> "a 45-year-old male";
                     "presents with" <-> "comes in with"
    clause_order     "After X, a 60-year-old woman develops Y." <-> "A 60-year-old woman develops Y after X."
    politeness       add a politeness prefix, or drop a leading "Please"
    synonyms         a table of common non-medical words ("typically" -> "usually", "most likely" -> "most
                     probable")
- `LLMRewriter(client)`: the paper's LLM path, one prompt per text asking for a paraphrase in a seeded
  style that keeps every medical term, number and unit (the entities are listed in the prompt), through
  `client.complete_many(..., return_exceptions=True)`; a failed request is None with its error kept in
  `last_errors`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from eval.parsing import strip_thinking
from tasks.sft_synthesis.samples import SOURCES, GateOutcome, SampleError, with_messages

__all__ = ["RewriteParams", "Rewriter", "LocalRewriter", "LLMRewriter", "RULES", "split_prompt", "fact_check",
           "fact_tokens", "option_lines", "rewrite_samples", "make_rewriter", "apply_rule", "clean_reply",
           "REJECT_REASONS"]

REJECT_REASONS = ("empty", "unchanged", "option_changed", "entity_lost", "number_lost")
GATE = "rewrite"


@dataclasses.dataclass(frozen=True)
class RewriteParams:
    share: float = 0.3                   # share of eligible samples that get variants: diversity without
    #                                      letting paraphrases of a few prompts dominate the SFT mix
    max_variants: int = 1                # variants per picked sample; each extra one is a new rewriter call
    roles: tuple[str, ...] = ("user",)   # the roles whose FIRST turn is rewritten (system and/or user; never
    #                                      assistant: the answer is the target and stays as reviewed)
    sources: tuple[str, ...] = ("mid_data", "kg_qa", "medquad", "vqa_rad", "ocr", "pubmedqa")
    #                                      pools eligible; "instruct" is left out because its prompts carry
    #                                      constraints a checker verifies, which a paraphrase could loosen
    rewriter: str = "local"              # "local" (rules) or "llm" (the paper's path via tasks/llm)
    max_rules: int = 2                   # local: rules applied per prompt; two keep the variant readable
    temperature: float = 0.7             # llm: sampling temperature; some freedom for varied wording
    max_tokens: int = 384                # llm: a rewritten stem is about as long as the original one

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"rewrite.share {self.share} must be in [0, 1]")
        if self.max_variants < 1 or self.max_rules < 1:
            raise ValueError("rewrite.max_variants and rewrite.max_rules must be >= 1")
        if not self.roles or set(self.roles) - {"system", "user"}:
            raise ValueError(f"rewrite.roles {self.roles!r}: a non-empty subset of ('system', 'user')")
        if set(self.sources) - set(SOURCES):
            raise ValueError(f"rewrite.sources {self.sources!r}: unknown pools (known: {SOURCES})")
        if self.rewriter not in ("local", "llm"):
            raise ValueError(f"rewrite.rewriter {self.rewriter!r}: 'local' or 'llm'")


class Rewriter(Protocol):
    name: str   # "local" | "llm": recorded as meta.rewriter of every variant

    def rewrite(self, texts: list[str], rng: np.random.Generator,
                protect: Sequence[Sequence[str]] | None = None) -> list[str | None]:
        """One variant per text (None: could not); `protect[i]` are entity names text i must keep."""
        ...


# ---- prompt anatomy: stem, options block, trailing format lines ----------------------------------------
_OPTION_LINE = re.compile(r"^\s*\(?[A-J][.):]\s+\S")
_INLINE_OPTIONS = re.compile(r"\(A\)\s*\S.*\(B\)\s*\S")     # "Answer Choices: (A) x (B) y ..." on one line
_OPTIONS_HEADER = re.compile(r"^\s*(?:options|choices|answer choices)\s*:\s*$", re.IGNORECASE)
_FORMAT_LINE = re.compile(r"^\s*(?:reason step|reply |respond |answer (?:with|in|using|on)|give (?:the|your|only)|"
                          r"first think|think step|return |output |answer:)", re.IGNORECASE)


def option_lines(text: str) -> list[str]:
    """Every line that reads as an answer option ("A. ...", "(B) ...", "C) ...") or holds the options inline
    ("Answer Choices: (A) x (B) y"), stripped, in order."""
    return [ln.strip() for ln in text.splitlines() if _OPTION_LINE.match(ln) or _INLINE_OPTIONS.search(ln)]


def split_prompt(text: str) -> tuple[str, str]:
    """(stem, rest) with stem + rest == text. The rest starts at the options block (or its "Options:" header
    line) when the text has at least two option lines or a line of inline options, else at the trailing
    answer-format lines; the stem
    loses its trailing whitespace to the rest, so a rewritten stem re-attaches with the same separator."""
    lines = text.splitlines(keepends=True)
    cut = len(lines)
    opts = [i for i, ln in enumerate(lines) if _OPTION_LINE.match(ln)]
    inline = [i for i, ln in enumerate(lines) if _INLINE_OPTIONS.search(ln)]
    if inline and (len(opts) < 2 or inline[0] < opts[0]):
        opts = inline * 2
    if len(opts) >= 2:
        cut = opts[0]
        while cut > 0 and (not lines[cut - 1].strip() or _OPTIONS_HEADER.match(lines[cut - 1])):
            cut -= 1
    else:
        while cut > 0 and (not lines[cut - 1].strip() or _FORMAT_LINE.match(lines[cut - 1])):
            cut -= 1
    stem = "".join(lines[:cut]).rstrip()
    return stem, text[len(stem):]


# ---- facts a variant must keep --------------------------------------------------------------------------
_NUMBER = r"\d+(?:[.,]\d+)*"
# measurement units anywhere (case-sensitive; compound ones before their parts)
_UNITS = ("mg/dL", "mg/kg", "mmol/L", "µmol/L", "umol/L", "mEq/L", "mL/min", "g/dL", "U/L", "IU/L", "mIU/L",
          "ng/mL", "pg/mL", "mmHg", "cmH2O", "mcg", "µg", "μg", "ng", "mg", "kg", "mL", "dL", "mmol", "mEq",
          "IU", "bpm", "cm", "mm", "°C", "°F", "%")
_UNIT_ANY = re.compile(r"(?<![A-Za-zµμ/])(" + "|".join(re.escape(u) for u in _UNITS) + r")(?![A-Za-z0-9/])")
# short or word units counted only right after a number ("3 days", "5 g", "2 L")
_UNIT_AFTER_NUMBER = re.compile(r"(?<=\d) ?(g|L|h|hr|hrs|min|s|sec|hours?|days?|weeks?|months?|years?|minutes?)\b")
_NUMBER_RE = re.compile(r"(?<![\w.])" + _NUMBER + r"(?![\d])")


def fact_tokens(text: str) -> Counter:
    """The number and unit tokens of a text as a multiset ("45", "3.5", "mmol/L", "days", "%")."""
    toks = Counter(m.group(0) for m in _NUMBER_RE.finditer(text))
    toks.update(m.group(1) for m in _UNIT_ANY.finditer(text))
    toks.update(m.group(1) for m in _UNIT_AFTER_NUMBER.finditer(text))
    return toks


def _entity_pattern(name: str) -> re.Pattern | None:
    words = [w for w in re.split(r"[\W_]+", name) if w]
    if not words:
        return None
    return re.compile(r"(?<![^\W_])" + r"[\W_]+".join(re.escape(w) for w in words) + r"(?![^\W_])", re.IGNORECASE)


def _normal(text: str) -> str:
    return " ".join(text.split())


def fact_check(original: str, variant: str | None, entities: Sequence[str]) -> str | None:
    """Why `variant` may not stand in for `original` (None: it may). Checked in this order:
    "empty" (None or blank), "unchanged" (equal after whitespace normalisation), "option_changed" (the option
    lines differ: a choice question must list the same options in the same order), "entity_lost" (an entity
    name that occurs in the original, matched case-insensitively at word boundaries with any non-word
    separator, is missing from the variant), "number_lost" (a number or unit token of the original occurs
    fewer times in the variant)."""
    if variant is None or not variant.strip():
        return "empty"
    if _normal(variant) == _normal(original):
        return "unchanged"
    if option_lines(original) != option_lines(variant):
        return "option_changed"
    for name in sorted(set(entities)):
        pat = _entity_pattern(name)
        if pat is not None and pat.search(original) and not pat.search(variant):
            return "entity_lost"
    if fact_tokens(original) - fact_tokens(variant):
        return "number_lost"
    return None


# ---- masking: what no local rule may touch --------------------------------------------------------------
_PH = "\ue000{}\ue001"
_PH_RE = re.compile("\ue000(\\d+)\ue001")
P = "\ue000\\d+\ue001"    # a placeholder inside a rule's pattern
_QUOTED = re.compile(r"\"[^\"\n]{1,120}\"|(?<!\w)'[^'\n]{1,120}'(?!\w)")
_ALLCAPS = re.compile(r"(?<![\w])[A-Z][A-Z0-9]*[A-Z0-9-]*[A-Z0-9](?![\w])")


def _mask(text: str, protect: Sequence[str]) -> tuple[str, list[str]]:
    spans: list[tuple[int, int]] = []
    for name in sorted(set(protect), key=lambda n: (-len(n), n)):
        pat = _entity_pattern(name)
        if pat is not None:
            spans += [m.span() for m in pat.finditer(text)]
    for rx in (_NUMBER_RE, _UNIT_ANY, _UNIT_AFTER_NUMBER, _QUOTED, _ALLCAPS):
        spans += [m.span() for m in rx.finditer(text)]
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, saved, pos = [], [], 0
    for a, b in merged:
        out.append(text[pos:a])
        out.append(_PH.format(len(saved)))
        saved.append(text[a:b])
        pos = b
    out.append(text[pos:])
    return "".join(out), saved


def _unmask(text: str, saved: list[str]) -> str:
    return _PH_RE.sub(lambda m: saved[int(m.group(1))], text)


# ---- the local rules: (masked stem, rng) -> new masked stem, or None where the rule does not apply -------
_START = r"(?:^|(?<=[.?!:] )|(?<=\n))"       # a sentence start (also after "Question: ")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _sub_one(pattern: re.Pattern, text: str, make: Callable[[re.Match], str]) -> str | None:
    m = pattern.search(text)
    if m is None:
        return None
    new = text[:m.start()] + make(m) + text[m.end():]
    return new if new != text else None


_WHAT_IS = re.compile(_START + r"What (is|are) ([^?\n]{1,200})\?")
_WHAT_TEMPLATES = ("Could you explain what {x} {v}?", "Can you tell me what {x} {v}?", "I would like to know what {x} {v}.")
_ASK_WHAT = re.compile(_START + r"(?:Could you explain|Can you tell me|I would like to know) what ([^?\n]{1,200}?) "
                       r"(is|are)[?.]")


def rule_question_frame(text: str, rng: np.random.Generator) -> str | None:
    """"What is X?" -> "Could you explain what X is?" (or another frame of _WHAT_TEMPLATES), and back."""
    out = _sub_one(_WHAT_IS, text, lambda m: _pick(rng, _WHAT_TEMPLATES).format(x=m.group(2), v=m.group(1)))
    return out if out is not None else _sub_one(_ASK_WHAT, text, lambda m: f"What {m.group(2)} {m.group(1)}?")


# only where "the following" stands for the options, i.e. a verb follows ("which of the following drugs is"
# would read "which of the options below drugs")
_WHICH_VERB = (r"(?= (?:is|are|was|were|would|will|best|most|should|could|can|does|do|has|have|might|may|must|"
               r"correctly|describes?|explains?|represents?|indicates?|increases?|decreases?|causes?)\b)")
_WHICH_START = re.compile(_START + r"Which (?:one )?of the following" + _WHICH_VERB)
_WHICH_MID = re.compile(r"(?<=[a-z,;] )which (?:one )?of the following" + _WHICH_VERB)
_WHICH_BACK = re.compile(_START + r"(?:Among the options below|Of the choices listed), which\b")


def rule_which_following(text: str, rng: np.random.Generator) -> str | None:
    """"Which of the following ..." -> "Among the options below, which ..." (mid-sentence: "which of the
    options below"), and back."""
    out = _sub_one(_WHICH_START, text,
                   lambda m: _pick(rng, ("Among the options below, which", "Of the choices listed, which")))
    if out is None:
        out = _sub_one(_WHICH_MID, text, lambda m: _pick(rng, ("which of the options below",
                                                             "which of the listed options")))
    return out if out is not None else _sub_one(_WHICH_BACK, text, lambda m: "Which of the following")


_VERBS = "explain|describe|list|name|identify|summarize|summarise|define|state|outline"
_IMPERATIVE = re.compile(_START + r"(?:Please )?(" + "|".join(v.capitalize() for v in _VERBS.split("|")) +
                         r") ([^.?!\n]{1,200})\.")
_INTERROGATIVE = re.compile(_START + r"(?:Can|Could|Would) you (?:please )?(" + _VERBS + r") ([^?\n]{1,200})\?")


def rule_mood(text: str, rng: np.random.Generator) -> str | None:
    """Imperative <-> interrogative: "Explain X." -> "Can you explain X?"; "Could you describe X?" ->
    "Describe X." (or "Please describe X.")."""
    out = _sub_one(_IMPERATIVE, text, lambda m: _pick(rng, ("Can you {v} {x}?", "Could you {v} {x}?",
                                                           "Would you {v} {x}?")).format(v=m.group(1).lower(),
                                                                                         x=m.group(2)))
    if out is not None:
        return out
    return _sub_one(_INTERROGATIVE, text, lambda m: _pick(rng, ("{V} {x}.", "Please {v} {x}.")).format(
        V=m.group(1).capitalize(), v=m.group(1), x=m.group(2)))


# "male"/"female" are nouns only where a verb or a clause boundary follows ("a 4-week-old female newborn" is
# an adjective and stays)
_PERSON = re.compile(rf"\b([Aa]n?) ({P})-(year|month|week|day)-old (man|woman|boy|girl|(?:male|female)(?= (?:presents|"
                     r"comes|is|was|has|had|with|who|reports|complains|develops|undergoes|returns|visits)\b|[,.]))\b")
_PERSON_BACK = re.compile(rf"\b([Aa]n?) ({P})-(year|month|week|day)-old (male|female) patient\b")
_PRESENTS = re.compile(r"\bpresents (with|to)\b")
_COMES = re.compile(r"\bcomes (in with|to)\b")
_SEX = {"man": "male", "boy": "male", "male": "male", "woman": "female", "girl": "female", "female": "female"}


def rule_patient(text: str, rng: np.random.Generator) -> str | None:
    """Patient phrasing of vignettes: "a 45-year-old man" (woman, boy, girl, male, female) -> "a 45-year-old
    male patient" -> "a 45-year-old male" (age and sex stay; the way back never guesses man or boy),
    "presents with" <-> "comes in with", "presents to" <-> "comes to"."""
    choices = []
    if _PERSON.search(text):
        choices.append(lambda t: _sub_one(_PERSON, t, lambda m: f"{m.group(1)} {m.group(2)}-{m.group(3)}-old "
                                                              f"{_SEX[m.group(4)]} patient"))
    if _PERSON_BACK.search(text):
        choices.append(lambda t: _sub_one(_PERSON_BACK, t, lambda m: f"{m.group(1)} {m.group(2)}-{m.group(3)}-old "
                                                                   f"{m.group(4)}"))
    if _PRESENTS.search(text):
        choices.append(lambda t: _sub_one(_PRESENTS, t, lambda m: "comes in with" if m.group(1) == "with"
                                          else "comes to"))
    elif _COMES.search(text):
        choices.append(lambda t: _sub_one(_COMES, t, lambda m: "presents with" if m.group(1) == "in with"
                                          else "presents to"))
    if not choices:
        return None
    return choices[int(rng.integers(len(choices)))](text)


_SUBS = "after|before|when|while|since|because|although|following|during|despite|until|once"
_DETS = "a|an|the|this|his|her|their|she|he|it|they|these|those|which|what|how"
_VERBS_MAIN = ("presents|develops|reports|complains|is|was|has|had|returns|comes|notes|experiences|undergoes|"
               "receives|takes|shows|should|would|can|does|did|are|were")
_LEAD = rf"(?:{_SUBS.title()}|(?:{P}|[A-Z][a-z]+) (?:hours?|days?|weeks?|months?|years?) (?:after|before|later))"
_FRONT = re.compile(rf"({_LEAD})( [^,]{{3,200}}), ((?:{_DETS}) .+?)([.?!])")
# moving a trailing phrase to the front is the riskier direction ("pain during intercourse" is a noun phrase):
# only conjunctions that head a clause, followed by a gerund or a subject, in a main clause of <= 20 words
_BACK_SUBS = "after|before|when|while|since|because|although|until|once"
_BACK = re.compile(rf"((?:{_DETS.title()}) [^,]+?),? ({_BACK_SUBS}) ((?:\w+ing|a|an|the|his|her|their|she|he|they|it|"
                   rf"this|of) [^,]{{3,200}}?)([.?!])")
_TIME_END = re.compile(rf"(?:{P}|\b(?:hours?|days?|weeks?|months?|years?|minutes?|shortly|soon|long|right|just))$")
_RELATIVE = re.compile(r"\b(?:that|which|who|whom|whose)\b")
_MAIN_VERB = re.compile(rf"\b(?:{_VERBS_MAIN})\b")
_SENTENCE = re.compile(r"[^.?!\n]+[.?!]")


def _front_to_back(s: str) -> str | None:
    m = _FRONT.fullmatch(s)
    if m is None:
        return None
    lead, clause, main, end = m.groups()
    return main[0].upper() + main[1:] + " " + lead[0].lower() + lead[1:] + clause + end


def _back_to_front(s: str) -> str | None:
    m = _BACK.fullmatch(s)
    if m is None:
        return None
    main, sub, clause, end = m.groups()
    # heuristics against splitting a noun phrase ("the drug given after surgery reduces pain"): the main part
    # must hold a finite verb and no relative pronoun, the moved part no finite verb
    # ... and "a survival of 3 years after onset" keeps its time span in one piece
    if (_RELATIVE.search(main) or not _MAIN_VERB.search(main) or _MAIN_VERB.search(clause)
            or len(main.split()) > 20 or _TIME_END.search(main)):
        return None
    return sub.capitalize() + " " + clause + ", " + main[0].lower() + main[1:] + end


def rule_clause_order(text: str, rng: np.random.Generator) -> str | None:
    """Clause reordering around the comma of a vignette sentence: "After starting X, a 60-year-old woman
    develops Y." <-> "A 60-year-old woman develops Y after starting X." (also "Two days after surgery, ...").
    A fronted clause moves back only when the main clause starts with a determiner or pronoun (so no proper
    noun is lower-cased); a trailing clause moves front only past the heuristics of `_back_to_front`."""
    cands = []
    for m in _SENTENCE.finditer(text):
        lead = len(m.group(0)) - len(m.group(0).lstrip())
        s = m.group(0)[lead:]
        new = _front_to_back(s) or _back_to_front(s)
        if new is not None and new != s:
            cands.append((m.start() + lead, m.end(), new))
    if not cands:
        return None
    a, b, new = cands[int(rng.integers(len(cands)))]
    return text[:a] + new + text[b:]


_POLITE = ("Please help with the following question. ", "I have a question. ", "Could you help me with this? ")
_PLEASE = re.compile(r"^Please ([a-z])")


_REQUEST = re.compile(r"^(?:Could you|Can you|Would you|I would like|I have a question)\b")


def rule_politeness(text: str, rng: np.random.Generator) -> str | None:
    """Drop a leading "Please ", or (with probability 1/2, so that not every variant opens alike) add a
    politeness prefix of _POLITE in front of a stem that does not already open with a request."""
    if _PLEASE.match(text):
        return _PLEASE.sub(lambda m: m.group(1).upper(), text, count=1)
    if text.startswith(_POLITE) or _REQUEST.match(text) or rng.random() >= 0.5:
        return None
    return _pick(rng, _POLITE) + text


# common non-medical words and phrases only: clinical modifiers ("severe", "sudden", "common" as in "common
# bile duct") are left out because they can be part of a term the automaton does not know
SYNONYMS = {"most likely": "most probable", "appropriate": "suitable", "initial": "first", "commonly": "frequently",
            "frequently": "commonly", "typically": "usually", "usually": "typically", "shows": "demonstrates",
            "demonstrates": "shows", "reveals": "shows", "began": "started", "begins": "starts",
            "approximately": "roughly", "recently": "lately", "currently": "presently",
            "consistent with": "compatible with", "associated with": "linked with", "because of": "owing to",
            "complains of": "reports", "quickly": "rapidly", "rapidly": "quickly", "important": "key",
            "explain": "clarify", "describe": "outline", "determine": "establish", "identify": "recognize"}
_SYN_RE = re.compile(r"(?<![\w\ue000])(" + "|".join(re.escape(k) for k in sorted(SYNONYMS, key=lambda k: (-len(k), k)))
                     + r")(?![\w])", re.IGNORECASE)


def rule_synonyms(text: str, rng: np.random.Generator) -> str | None:
    """Swap words of the SYNONYMS table, each match with probability 1/2 and at least one (drawn) if any
    matches; a capitalised word stays capitalised; upper-case words are never matched (they are masked)."""
    hits = [m for m in _SYN_RE.finditer(text) if m.group(1).lower() in SYNONYMS
            and (m.group(1).islower() or m.group(1)[0].isupper() and m.group(1)[1:].islower()
                 or " " in m.group(1) and m.group(1)[0].isupper())]
    if not hits:
        return None
    chosen = [bool(rng.random() < 0.5) for _ in hits]
    if not any(chosen):
        chosen[int(rng.integers(len(hits)))] = True
    out, pos = [], 0
    for m, on in zip(hits, chosen):
        if not on:
            continue
        word = m.group(1)
        new = SYNONYMS[word.lower()]
        if word.lower() == "most likely" and not text[:m.start()].lower().endswith("the "):
            new = "most probably"    # the adverb: "was most likely treated", "is most likely due to"
        out += [text[pos:m.start()], new[0].upper() + new[1:] if word[0].isupper() else new]
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


RULES: dict[str, Callable[[str, np.random.Generator], str | None]] = {
    "question_frame": rule_question_frame, "which_following": rule_which_following, "mood": rule_mood,
    "patient": rule_patient, "clause_order": rule_clause_order, "politeness": rule_politeness,
    "synonyms": rule_synonyms}


def apply_rule(name: str, text: str, rng: np.random.Generator, protect: Sequence[str] = ()) -> str | None:
    """One rule of RULES on a stem, with entity spans of `protect`, numbers, units, quotes and abbreviations
    masked as in `LocalRewriter` (None where the rule does not apply)."""
    masked, saved = _mask(text, protect)
    new = RULES[name](masked, rng)
    return None if new is None or new == masked else _unmask(new, saved)


@dataclasses.dataclass
class LocalRewriter:
    """Rule-based paraphrase of the stem (RULES, applied in a seeded order, at most `max_rules`)."""
    max_rules: int = 2
    name: str = "local"
    last_rules: list[list[str]] = dataclasses.field(default_factory=list)   # rules applied, per text

    def rewrite(self, texts: list[str], rng: np.random.Generator,
                protect: Sequence[Sequence[str]] | None = None) -> list[str | None]:
        out: list[str | None] = []
        self.last_rules = []
        names = sorted(RULES)
        for i, text in enumerate(texts):
            stem, rest = split_prompt(text)
            masked, saved = _mask(stem, protect[i] if protect else ())
            applied: list[str] = []
            for j in rng.permutation(len(names)):
                if len(applied) >= self.max_rules or not masked.strip():
                    break
                new = RULES[names[j]](masked, rng)
                if new is not None and new != masked:
                    masked, applied = new, applied + [names[j]]
            self.last_rules.append(applied)
            out.append(_unmask(masked, saved) + rest if applied else None)
        return out


LLM_SYSTEM = ("You rewrite medical questions. Paraphrase the question so that it is worded differently but asks "
              "exactly the same thing. Keep every medical term (diseases, drugs, anatomy, tests, procedures), every "
              "number and every unit exactly as written; do not add, remove or change any fact; do not answer the "
              "question. Reply with the rewritten question only.")
LLM_USER = "Style: {style}.\nKeep these terms verbatim: {terms}.\n\nQuestion:\n{stem}"
LLM_STYLES = ("more formal", "more conversational", "as a clinician asking a colleague", "more concise",
              "with the sentence order changed where the meaning allows")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)
_LABEL = re.compile(r"^(?:rewritten|paraphrased?|reworded|new)(?: question| version| prompt)?\s*:\s*", re.IGNORECASE)


def clean_reply(reply: str) -> str:
    """The rewritten stem of an LLM reply: reasoning, a code fence, a "Rewritten question:" label and
    enclosing quotes removed."""
    text, _ = strip_thinking(reply)
    m = _FENCE.match(text.strip())
    text = (m.group(1) if m else text).strip()
    text = _LABEL.sub("", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


@dataclasses.dataclass
class LLMRewriter:
    """The paper's LLM path: one paraphrase request per text, in a style drawn with the seeded rng."""
    client: Any
    temperature: float = 0.7
    max_tokens: int = 384
    name: str = "llm"
    last_errors: list[str | None] = dataclasses.field(default_factory=list)

    def messages(self, stem: str, terms: Sequence[str], style: str) -> list[dict]:
        listed = "; ".join(sorted(set(terms))) or "(none)"
        return [{"role": "system", "content": LLM_SYSTEM},
                {"role": "user", "content": LLM_USER.format(style=style, terms=listed, stem=stem)}]

    def rewrite(self, texts: list[str], rng: np.random.Generator,
                protect: Sequence[Sequence[str]] | None = None) -> list[str | None]:
        parts = [split_prompt(t) for t in texts]
        chats = [self.messages(stem, protect[i] if protect else (), _pick(rng, LLM_STYLES))
                 for i, (stem, _) in enumerate(parts)]
        todo = [i for i, (stem, _) in enumerate(parts) if stem.strip()]
        replies = self.client.complete_many([chats[i] for i in todo], return_exceptions=True,
                                            temperature=self.temperature, max_tokens=self.max_tokens)
        out: list[str | None] = [None] * len(texts)
        self.last_errors = ["empty_stem"] * len(texts)
        for i, r in zip(todo, replies):
            if isinstance(r, str):
                out[i], self.last_errors[i] = clean_reply(r) + parts[i][1], None
            else:
                self.last_errors[i] = f"request_failed: {str(r)[:200]}"
        return out


def make_rewriter(params: RewriteParams, client: Any = None) -> Rewriter:
    """The rewriter `params.rewriter` names; "llm" needs the project's LLM client."""
    if params.rewriter == "llm":
        if client is None:
            raise ValueError("rewrite.rewriter=llm needs an LLM client (tasks/llm)")
        return LLMRewriter(client, temperature=params.temperature, max_tokens=params.max_tokens)
    return LocalRewriter(max_rules=params.max_rules)


# ---- the samples --------------------------------------------------------------------------------------
def _targets(sample: dict, roles: Sequence[str]) -> list[tuple[int, int | None]] | None:
    """(message index, text-part index or None for string content) of the first turn of each role, or None
    when a role has no such turn with text."""
    out = []
    for role in sorted(roles, key=("system", "user").index):
        idx = next((i for i, m in enumerate(sample["messages"]) if m.get("role") == role), None)
        if idx is None:
            return None
        content = sample["messages"][idx].get("content")
        if isinstance(content, str):
            if not content.strip():
                return None
            out.append((idx, None))
            continue
        part = next((j for j, p in enumerate(content or []) if p.get("type") == "text" and p.get("text", "").strip()),
                    None)
        if part is None:
            return None
        out.append((idx, part))
    return out


def _text_at(sample: dict, where: tuple[int, int | None]) -> str:
    content = sample["messages"][where[0]]["content"]
    return content if where[1] is None else content[where[1]]["text"]


def _replace(messages: list[dict], where: tuple[int, int | None], text: str) -> list[dict]:
    out = list(messages)
    msg = dict(out[where[0]])
    if where[1] is None:
        msg["content"] = text
    else:
        parts = list(msg["content"])
        parts[where[1]] = {**parts[where[1]], "text": text}
        msg["content"] = parts
    out[where[0]] = msg
    return out


def rewrite_samples(samples: Sequence[dict], rewriter: Rewriter, find_entities: Callable[[str], list[str]],
                    params: RewriteParams, seed: int) -> GateOutcome:
    """Variants of a seeded share of `samples` (module docstring). `find_entities(text)` gives the entity
    names a variant must keep (the stage passes the KG automaton's matches). read = variants attempted."""
    out = GateOutcome()
    eligible = []
    for s in sorted(samples, key=lambda s: s["id"]):
        meta = s.get("meta", {})
        if s.get("family") not in params.sources or "rewrite_of" in meta or "repeat" in meta:
            continue
        where = _targets(s, params.roles)
        if where is not None:
            eligible.append((s, where))
    n_pick = math.floor(params.share * len(eligible) + 0.5)
    rng = np.random.default_rng([seed, 0])
    picked = [eligible[i] for i in sorted(rng.choice(len(eligible), size=n_pick, replace=False))] if n_pick else []
    seen = {s["id"] for s in samples}
    flat = [(k, w) for k, (_, where) in enumerate(picked) for w in where]     # (picked index, target)
    rows_of: list[list[int]] = [[] for _ in picked]
    for j, (k, _) in enumerate(flat):
        rows_of[k].append(j)
    originals = [_text_at(picked[k][0], w) for k, w in flat]
    entities = [sorted(set(find_entities(t))) for t in originals]
    for variant in range(params.max_variants):
        texts = rewriter.rewrite(list(originals), np.random.default_rng([seed, variant + 1]), protect=entities)
        if len(texts) != len(originals):
            raise ValueError(f"rewriter {rewriter.name!r} returned {len(texts)} texts for {len(originals)}")
        errors = getattr(rewriter, "last_errors", None) or [None] * len(texts)
        for k, (sample, where) in enumerate(picked):
            out.read += 1
            rows = rows_of[k]
            item = {"id": sample["id"], "variant": variant, "texts": [texts[j] for j in rows]}
            failed = next((j for j in rows if texts[j] is None), None)
            if failed is not None:
                out.reject(GATE, "no_rewrite", errors[failed] or "the rewriter found nothing to rewrite", item)
                continue
            reason = next(((r, j) for j in rows if (r := fact_check(originals[j], texts[j], entities[j]))), None)
            if reason is not None:
                out.reject(GATE, reason[0], f"{originals[reason[1]][:200]!r} -> {texts[reason[1]][:200]!r}", item)
                continue
            messages = list(sample["messages"])
            for j in rows:
                messages = _replace(messages, flat[j][1], texts[j])
            try:
                new = with_messages(sample, messages, rewrite_of=sample["id"], rewriter=rewriter.name)
            except SampleError as e:
                out.reject(GATE, "invalid_sample", str(e), item)
                continue
            if new["id"] in seen:
                out.reject(GATE, "duplicate", f"{new['id']} already exists", item)
                continue
            seen.add(new["id"])
            out.kept.append(new)
    return out
