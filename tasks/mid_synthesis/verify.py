"""The dual quality gate of mid-training reasoning data: Outcome-Verify (is the final answer right?) and
Thinking-Verify (does the chain that produced it hold up?), paper §4.1.1.

    reasoning, answer = split_reply("<think>The rash ... so B.</think>\nAnswer: B")
    v = verify_outcome(answer, gold="B", kind="choice", options=("Measles", "Rubella", "Mumps"))
    v.ok, v.reason, v.parsed                       # True, None, "B"
    checker = LocalThinkingVerifier(ThinkingParams())    # or LLMThinkingVerifier(client)
    checker.verify([ThinkingCase(question, options, reasoning, answer, gold="B", kind="choice")])
    # -> [[]] (no failure reasons) or e.g. [["conclusion_mismatch", "hindsight_phrase"]]

Outcome-Verify per answer kind (samples.ANSWER_KINDS), reading the answer exactly as evaluation reads it
(eval/parsing.py, eval/scoring.py), so a kept trajectory is one the harness would have scored correct:
- choice: `parse_choice` against the options; the gold is a letter or an option's text;
- judgement: `parse_label` (yes / no / maybe);
- fill: the answer phrase (`extract_open`) equals the gold after SQuAD normalisation or as numbers with
  units (`open_match`), or contains the gold's tokens as a contiguous span in a short phrase, not negated,
  not hedged ("lung or left kidney"), not one of a list of three or more.
  A numeric gold is compared only as numbers (`quantities_match`): "12" must not match "12.5";
- open: max(token F1, ROUGE-L) of the whole answer body against the gold, above a threshold.

Thinking-Verify behind one interface (`ThinkingVerifier.verify(cases) -> list[list[str]]`, an empty
list meaning the chain passed):
- `LocalThinkingVerifier`, checks by code: the reasoning is there and long enough; its conclusion (last
  sentences) states the same answer as the final answer, read by the same parser; no hindsight phrase
  (HINDSIGHT_PHRASES: the chain admits it was handed the answer); no answer stated in the first sentence
  ahead of every reasoning step. It cannot judge whether each step is medically valid -- only that the
  chain's ends agree and it does not cite the answer it was supposed to derive;
- `LLMThinkingVerifier`: the paper's LLM judge; JSON {consistent, hindsight, leak, reason}. A judge that
  fails (request or unparseable reply) fails the chain with a reason, never raises.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Protocol

from eval.parsing import (
    extract_open,
    is_numeric_answer,
    normalize_answer,
    parse_choice,
    parse_label,
    prepare,
    quantities_match,
    strip_thinking,
)
from eval.scoring import open_match, rouge_l, token_f1
from tasks.mid_synthesis.experts import LETTERS

# Phrases by which a chain admits it was handed the answer instead of deriving it. Lower-case; matched
# on whitespace-collapsed lower-case text.
HINDSIGHT_PHRASES = (
    "the answer is given", "answer given", "given answer", "as the reference says", "the reference answer",
    "reference solution", "according to the reference", "we are told the answer", "i am told the answer",
    "i was told the answer", "the correct answer provided", "the provided answer", "the answer provided",
    "correct answer is provided", "working backwards from the answer", "work backwards from the answer",
    "working backward from the answer", "since we know the answer", "knowing the answer", "the expected answer",
    "the ground truth", "ground-truth answer", "gold answer", "the answer key", "the label says",
    "matches the provided", "to justify the answer", "reverse-engineer", "reverse engineer",
)
# "answer is", "answer:", "the correct option" -- an explicit answer statement (used for the leak check)
ANSWER_MARKER = re.compile(r"(?i)\b(?:final\s+answer|answer\s*(?:is|:|would be|=)|correct\s+(?:option|choice|answer)"
                            r"|best\s+(?:option|answer)|the\s+diagnosis\s+is)\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^a-z0-9])|\n+")
_NEGATION_BEFORE = re.compile(r"(?:\bnot|\bno|\bnever|\bwithout|\bexclud\w*|\brule[sd]? out|n't)\s*(?:\w+\s+){0,1}$")
_FINAL_LINE = re.compile(r"(?im)^[ \t*]*(?:final\s+)?answer\s*[:\-][ \t]*(\S[^\n]*)\s*\Z")
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)


# ---- replies ----------------------------------------------------------------------------------------
def split_reply(text: str | None) -> tuple[str, str]:
    """(reasoning, answer) of a reply following the <think>...</think> convention. The answer is what the
    harness would parse (`strip_thinking`); the reasoning is what lies between the first <think> and the
    last </think> (or before a stray </think>, when the chat template opened the block). A reply with an
    unclosed <think> has no answer: its reasoning never finished. A reply without any think block that
    ends with the requested "Answer: ..." line (models never trained on <think> reason in plain text)
    splits there: the text before it is the reasoning, the line's content the answer."""
    if not text:
        return "", ""
    answer, had = strip_thinking(text)
    if not had:
        last = _FINAL_LINE.search(answer)
        if last and answer[: last.start()].strip():
            return answer[: last.start()].strip(), last.group(1).strip()
        return "", answer.strip()
    closes = list(_THINK_CLOSE.finditer(text))
    opened = _THINK_OPEN.search(text)
    start = opened.end() if opened else 0
    end = closes[-1].start() if closes and closes[-1].start() >= start else len(text)
    inner = _THINK_OPEN.sub(" ", _THINK_CLOSE.sub(" ", text[start:end]))
    return inner.strip(), answer.strip()


def sentences(text: str) -> list[str]:
    """Sentences and lines of `text`, stripped, empty ones dropped (a plain splitter: enough to find a
    chain's first and last statements, not a linguistic parser)."""
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s and s.strip()]


def option_map(options: Sequence[str]) -> dict[str, str]:
    return {LETTERS[i]: str(t) for i, t in enumerate(options)}


def gold_letter(gold: str, options: Sequence[str]) -> str | None:
    """The option letter of a gold given as a letter ("C", "(C)") or as an option's text."""
    g = gold.strip().strip("().[]").strip()
    if len(g) == 1 and g.upper() in LETTERS[:len(options)]:
        return g.upper()
    norm = normalize_answer(gold)
    hits = [LETTERS[i] for i, t in enumerate(options) if normalize_answer(str(t)) == norm]
    return hits[0] if len(hits) == 1 else None


# ---- Outcome-Verify ---------------------------------------------------------------------------------
@dataclasses.dataclass
class OutcomeParams:
    open_threshold: float = 0.5          # max(token F1, ROUGE-L) an open answer needs against the gold
    fill_max_extra_tokens: int = 8       # a phrase may wrap the gold span in this many extra tokens at most
    #                                      (a reply listing every candidate must not pass by containment)


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None            # why it failed: "unparsed:<parse failure>", "wrong_<kind>", ...
    parsed: str | None = None            # what was read (letter, label, phrase)
    score: float = 0.0                   # 1/0 for closed kinds, the similarity for open


def _contains_gold(phrase: str, gold: str, max_extra: int) -> bool:
    p, g = normalize_answer(phrase), normalize_answer(gold)
    if not p or not g or len(p.split()) > len(g.split()) + max_extra:
        return False
    m = re.search(rf"(?:^| ){re.escape(g)}(?: |$)", p)
    if not m or _NEGATION_BEFORE.search(p[:m.start()]):
        return False
    # "lung or left kidney" hedges between candidates, "lung, liver, left kidney" lists them: not an answer
    listed = len([x for x in re.split(r"[,;/]|\band\b", phrase) if x.strip()]) >= 3
    return not listed and "or" not in (p[:m.start()] + " " + p[m.end():]).split()


def verify_outcome(answer: str, gold: str, kind: str, options: Sequence[str] = (),
                   params: OutcomeParams | None = None) -> Verdict:
    """Outcome-Verify of one final answer (module docstring). `answer` may still hold a <think> block."""
    p = params or OutcomeParams()
    if kind == "choice":
        letter = gold_letter(gold, options)
        if letter is None:
            return Verdict(False, "bad_gold", None)
        got = parse_choice(answer, option_map(options))
        if not got.ok:
            return Verdict(False, f"unparsed:{got.failure}")
        return Verdict(got.value == letter, None if got.value == letter else "wrong_choice", got.value,
                       float(got.value == letter))
    if kind == "judgement":
        want = parse_label(gold)
        if not want.ok:
            return Verdict(False, "bad_gold")
        got = parse_label(answer)
        if not got.ok:
            return Verdict(False, f"unparsed:{got.failure}")
        return Verdict(got.value == want.value, None if got.value == want.value else "wrong_judgement",
                       got.value, float(got.value == want.value))
    if kind == "fill":
        got = extract_open(answer)
        if not got.ok:
            return Verdict(False, f"unparsed:{got.failure}")
        if is_numeric_answer(gold):
            ok = quantities_match(got.value, gold)
        else:
            ok = open_match(got.value, (gold,)) or _contains_gold(got.value, gold, p.fill_max_extra_tokens)
        return Verdict(ok, None if ok else "wrong_fill", got.value, float(ok))
    if kind == "open":
        body, failure = prepare(answer)
        if failure:
            return Verdict(False, f"unparsed:{failure}")
        score = max(token_f1(body, gold)[0], rouge_l(body, (gold,)))
        ok = score >= p.open_threshold
        return Verdict(ok, None if ok else "low_similarity", body[:200], score)
    raise ValueError(f"unknown answer kind {kind!r}")


# ---- Thinking-Verify --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ThinkingCase:
    question: str
    options: tuple[str, ...]
    reasoning: str
    answer: str
    gold: str
    kind: str


class ThinkingVerifier(Protocol):
    name: str

    def verify(self, cases: Sequence[ThinkingCase]) -> list[list[str]]: ...


@dataclasses.dataclass
class ThinkingParams:
    min_reasoning_words: int = 12        # below this a "chain" is an answer with a preamble
    conclusion_sentences: int = 2        # the conclusion: this many last sentences of the reasoning
    open_conclusion_recall: float = 0.3  # open answers: share of answer tokens the conclusion must carry
    judge_max_tokens: int = 200


def hindsight_phrases(text: str) -> list[str]:
    low = " ".join(text.lower().split())
    return [p for p in HINDSIGHT_PHRASES if p in low]


def _read(text: str, kind: str, options: Sequence[str]):
    """The answer a piece of text states, read by the parser of its kind (None when it states none)."""
    if kind == "choice":
        return parse_choice(text, option_map(options))
    if kind == "judgement":
        return parse_label(text)
    return extract_open(text)


def states_same(text: str, answer: str, case: ThinkingCase, p: ThinkingParams) -> bool:
    """Whether `text` states the answer `answer` states (same letter / label; for fill, the answer phrase
    or equal numbers inside it; for open, enough of the answer's tokens)."""
    if case.kind in ("choice", "judgement"):
        a, t = _read(answer, case.kind, case.options), _read(text, case.kind, case.options)
        return a.ok and t.ok and a.value == t.value
    phrase = extract_open(answer).value or ""
    if not phrase:
        return False
    if case.kind == "fill":
        if is_numeric_answer(phrase):
            return any(quantities_match(s, phrase) for s in [text, *sentences(text)])
        return f" {normalize_answer(phrase)} " in f" {normalize_answer(text)} "
    return token_f1(text, prepare(answer)[0])[1] >= p.open_conclusion_recall


def local_thinking_failures(case: ThinkingCase, p: ThinkingParams) -> list[str]:
    """The Local Thinking-Verify checks of one chain (module docstring); [] when it passes."""
    words = case.reasoning.split()
    if not words:
        return ["empty_reasoning"]
    failures = []
    if len(words) < p.min_reasoning_words:
        failures.append("short_reasoning")
    sents = sentences(case.reasoning)
    conclusion = " ".join(sents[-p.conclusion_sentences:])
    if not states_same(conclusion, case.answer, case, p):
        failures.append("conclusion_mismatch")
    if hindsight_phrases(case.reasoning):
        failures.append("hindsight_phrase")
    if len(sents) >= 2 and _leaks(sents[0], case, p):
        failures.append("answer_leak")
    return failures


def _leaks(first: str, case: ThinkingCase, p: ThinkingParams) -> bool:
    """The first sentence announces the final answer before any step: an explicit answer statement
    ("The answer is C.", "Answer: no") that names the same answer as the final one."""
    if case.kind == "choice":
        got = parse_choice(first, option_map(case.options))
        stated = got.ok and got.rule in ("answer_tag", "boxed", "answer_statement", "is_correct")
    else:
        stated = bool(ANSWER_MARKER.search(first))
    return stated and states_same(first, case.answer, case, p)


class LocalThinkingVerifier:
    name = "local"

    def __init__(self, params: ThinkingParams | None = None):
        self.params = params or ThinkingParams()

    def verify(self, cases: Sequence[ThinkingCase]) -> list[list[str]]:
        return [local_thinking_failures(c, self.params) for c in cases]


JUDGE_SYSTEM = ("You are a strict reviewer of medical reasoning. You check whether a chain of thought "
                "genuinely derives its final answer.")
JUDGE_PROMPT = """Question:
{question}
{options}
Reasoning (chain of thought):
{reasoning}

Final answer: {answer}

Check the reasoning:
- consistent: does the reasoning's own conclusion state the same answer as the final answer, following from its steps?
- hindsight: does the reasoning rely on already knowing the answer (mentions a given/reference/expected answer,
  works backwards from it) instead of deriving it?
- leak: does the reasoning state the final answer at its very start, before any reasoning step?
Reply with one JSON object only:
{{"consistent": true or false, "hindsight": true or false, "leak": true or false, "reason": "<one sentence>"}}"""
JUDGE_REPAIR = ("Your reply could not be used ({problem}). Reply with one JSON object only: "
                '{{"consistent": bool, "hindsight": bool, "leak": bool, "reason": "..."}}')


class LLMThinkingVerifier:
    """The paper's LLM judge of a chain. Empty / too short chains fail locally without a request: no judge
    is needed to see that there is nothing to judge."""
    name = "llm"

    def __init__(self, client, params: ThinkingParams | None = None):
        self.client = client
        self.params = params or ThinkingParams()

    def verify(self, cases: Sequence[ThinkingCase]) -> list[list[str]]:
        from tasks.llm.ask import ask_parsed, json_object

        out: list[list[str]] = [[] for _ in cases]
        todo = []
        for i, c in enumerate(cases):
            n = len(c.reasoning.split())
            if n == 0 or n < self.params.min_reasoning_words:
                out[i] = ["empty_reasoning" if n == 0 else "short_reasoning"]
            else:
                todo.append(i)
        chats = [[{"role": "system", "content": JUDGE_SYSTEM},
                  {"role": "user", "content": JUDGE_PROMPT.format(
                      question=cases[i].question, reasoning=cases[i].reasoning[:6000], answer=cases[i].answer[:1000],
                      options="".join(f"{k}. {t}\n" for k, t in option_map(cases[i].options).items()))}]
                 for i in todo]
        required = {"consistent": bool, "hindsight": bool, "leak": bool, "reason": str}
        answers = ask_parsed(self.client, chats, lambda r: json_object(r, required), JUDGE_REPAIR,
                             max_tokens=self.params.judge_max_tokens) if chats else []
        for i, a in zip(todo, answers):
            if not a.ok:
                out[i] = [f"judge_{a.failure['kind']}"]
                continue
            v = a.value
            out[i] = ([] if v["consistent"] else ["conclusion_mismatch"]) + \
                (["hindsight_phrase"] if v["hindsight"] else []) + (["answer_leak"] if v["leak"] else [])
        return out
