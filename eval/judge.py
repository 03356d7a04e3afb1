"""Rubric judges for long-form answers (reports, captions): key points covered earn credit,
unsupported statements cost credit (paper §6.2 "Inhouse Caption": "correctly covered key points
receive positive credit, while incorrect statements are penalized").

    score = clamp((covered - penalty * unsupported) / n_key_points, 0, 1)

Key points are the item's `key_points`, or else the reference's sentences. Two judges behind one
interface (ARCHITECTURE.md "LLM roles"):
- `LocalRubricJudge` (no LLM; deterministic): a key point is covered when the candidate contains
  at least `cover_threshold` of its content words; a candidate sentence is unsupported when fewer
  than `support_threshold` of its content words occur in the reference or the key points.
  Lexical, so it misses paraphrase; it is the floor every run can afford.
- `LLMRubricJudge`: the reference-augmented rubric prompt through the project's LLM client
  (tasks/llm: retries, cache, any OpenAI-compatible endpoint), a JSON reply
  {"covered": [key point numbers], "unsupported": ["statement", ...]} read by the strict parser.
  An unreadable reply is a judge failure: the item scores 0 and the failure is counted, like a
  parse failure. Endpoint errors propagate so the run stops and resumes later.
"""

from __future__ import annotations

import dataclasses
import re

from eval.benchmarks import Item
from eval.parsing import normalize_answer

STOPWORDS = frozenset(
    ["a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "with", "without", "by", "from", "is", "are", "was", "were", "be", "been", "being", "this", "that", "these", "those", "it", "its", "there", "no", "not", "as", "than", "then", "also", "which", "who", "whom", "whose", "what", "when", "where", "how", "may", "can", "could", "should", "would", "will", "shall", "has", "have", "had", "do", "does", "did", "into", "onto", "over", "under", "between", "within", "per", "via"])
MAX_JUDGE_CHARS = 3000       # reference / candidate text shown to the LLM judge (fits n_ctx 2048-4096)


@dataclasses.dataclass
class Verdict:
    score: float
    covered: int
    key_points: int
    unsupported: int
    method: str
    failure: str | None = None
    raw: str = ""

    def metrics(self) -> dict[str, float]:
        return {"judge_score": self.score, "key_point_recall": self.covered / max(self.key_points, 1),
                "unsupported_statements": float(self.unsupported)}


def rubric_score(covered: int, unsupported: int, n_points: int, penalty: float) -> float:
    if n_points <= 0:
        return 0.0
    return min(1.0, max(0.0, (covered - penalty * unsupported) / n_points))


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?。])\s+|\n+", text)
    return [p.strip() for p in parts if len(normalize_answer(p).split()) >= 2]


def key_points_of(item: Item) -> list[str]:
    return list(item.key_points) or sentences(item.answer) or [item.answer]


def content_words(text: str) -> set[str]:
    # crude plural folding so "effusions" covers "effusion"; enough for a lexical floor
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w
            for w in normalize_answer(text).split() if w not in STOPWORDS}


@dataclasses.dataclass
class LocalRubricJudge:
    penalty: float = 0.5
    cover_threshold: float = 0.6
    support_threshold: float = 0.3
    name: str = "local"

    def judge(self, item: Item, candidate: str) -> Verdict:
        points = key_points_of(item)
        cand = content_words(candidate)
        covered = 0
        for p in points:
            words = content_words(p)
            if words and len(words & cand) / len(words) >= self.cover_threshold:
                covered += 1
        support = content_words(" ".join([item.answer, *points]))
        unsupported = 0
        for s in sentences(candidate):
            words = content_words(s)
            if words and len(words & support) / len(words) < self.support_threshold:
                unsupported += 1
        return Verdict(rubric_score(covered, unsupported, len(points), self.penalty), covered, len(points),
                       unsupported, "local")


JUDGE_SYSTEM = "You are a strict medical grader. You answer only with JSON."
JUDGE_PROMPT = (
    "Grade the candidate medical text against the reference.\n"
    "1. For each numbered key point, decide whether the candidate states it with the same clinical meaning.\n"
    "2. List the candidate's statements that the reference does not support or that contradict it.\n"
    'Answer with exactly one JSON object: {{"covered": [numbers of covered key points], '
    '"unsupported": ["statement", ...]}}\n\n'
    "Reference:\n<<<\n{reference}\n>>>\n\nKey points:\n{points}\n\nCandidate:\n<<<\n{candidate}\n>>>")


def judge_format(n_points: int) -> dict:
    """response_format constraining the reply to the verdict schema (llama.cpp server, vLLM)."""
    return {"type": "json_object", "schema": {
        "type": "object", "required": ["covered", "unsupported"],
        "properties": {"covered": {"type": "array", "items": {"type": "integer", "minimum": 1,
                                                               "maximum": max(n_points, 1)}},
                       "unsupported": {"type": "array", "items": {"type": "string", "maxLength": 200},
                                       "maxItems": 10}}}}


class LLMRubricJudge:
    name = "llm"

    def __init__(self, client, *, penalty: float = 0.5, constrained_json: bool = True, max_tokens: int = 256):
        self.client = client
        self.penalty = penalty
        self.constrained_json = constrained_json
        self.max_tokens = max_tokens

    def messages(self, item: Item, candidate: str) -> list[dict]:
        points = key_points_of(item)
        prompt = JUDGE_PROMPT.format(reference=item.answer[:MAX_JUDGE_CHARS],
                                     points="\n".join(f"{i}. {p}" for i, p in enumerate(points, 1)),
                                     candidate=candidate[:MAX_JUDGE_CHARS])
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]

    def judge(self, item: Item, candidate: str) -> Verdict:
        from tasks.llm.parsing import ParseError, parse_json_like

        points = key_points_of(item)
        kw = {"response_format": judge_format(len(points))} if self.constrained_json else {}
        raw = self.client.complete(self.messages(item, candidate), temperature=0.0,
                                   max_tokens=self.max_tokens, **kw)
        try:
            obj = parse_json_like(raw, expect=dict)
            covered_raw, unsupported_raw = obj["covered"], obj["unsupported"]
            if not isinstance(covered_raw, list) or not isinstance(unsupported_raw, list):
                raise TypeError("covered/unsupported must be lists")
            covered = {int(c) for c in covered_raw if isinstance(c, (int, str)) and str(c).strip().isdigit()}
            if any(c < 1 or c > len(points) for c in covered):
                raise ValueError(f"key point number out of range 1..{len(points)}")
        except (ParseError, KeyError, ValueError, TypeError):
            return Verdict(0.0, 0, len(points), 0, "llm", "judge_unparsed", raw[:500])
        # small models echo the schema's placeholder ("statement", "...") back: not a statement
        unsupported = sum(1 for s in unsupported_raw
                          if isinstance(s, str) and s.strip().strip(".").lower() not in ("", "statement"))
        return Verdict(rubric_score(len(covered), unsupported, len(points), self.penalty), len(covered),
                       len(points), unsupported, "llm", None, raw[:500])
