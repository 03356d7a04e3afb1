"""Soft reward shaping: multiplicative penalties for length, format and rubric violations.

Paper §5.2.2: on top of the graders, soft shaping discourages verbosity, broken output formats and
violations of the rubric's negative criteria without overriding correctness: each penalty multiplies the
reward by a factor in (0, 1], and the product (`factor(...).value`) is what `fusion.fuse` takes as the
"shaping" component.

    s = factor(item, violations=2)      # Score(value=0.64, detail={"penalties": [...], ...})

Penalties (defaults in `ShapingParams`):
- length: answer words beyond `answer_target`: max(answer_floor, 1 - answer_rate * excess / answer_target);
  the same for the reasoning (`think_*`), which is allowed to be longer. Words (whitespace tokens) stand
  in for tokenizer tokens so the penalty does not depend on a tokenizer; the targets are in words.
- format: an unclosed <think> (reasoning cut off, no answer) x unclosed_think; an empty answer x
  empty_answer; a closed-answer item (answer_kind choice / judgement) without an "Answer:" line x
  no_answer_line; degenerate text around the answer x degenerate (a line or sentence of the answer line
  and what follows it occurring `tail_repeat_min` times or more, e.g. "Answer: B\\nAnswer: B"; without an
  answer line, any sentence of the answer repeated `loop_repeat_min` times). An unclosed <think> with
  nothing before it is also an empty answer: both apply (0.5 * 0.3), the worst format. An empty answer
  gets no further format checks (there is nothing to check).
- criteria violations: (1 - per_violation) ** violations, `violations` counted by the caller from the
  rubric's failed 'exclude' items (the rubric grader owns what a violation is).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

from tasks.reward.item import RewardItem, Score, split_thinking

CLOSED_KINDS = ("choice", "judgement")
_ANSWER_LINE = re.compile(r"^[ \t>#*_]*(?:final[ \t]+)?answer[ \t*_]*[:：]", re.I | re.M)
_SEGMENTS = re.compile(r"[^\n.!?。！？]+")
_WORD = re.compile(r"\w+")


@dataclasses.dataclass(frozen=True)
class ShapingParams:
    """Defaults: an answer may use 512 words and the reasoning 2048 before any length penalty; beyond
    that the factor falls linearly by half per target-length of excess (rate 0.5) down to a floor of
    0.5, so length alone never costs more than half of the reward. Format: unclosed reasoning x0.5,
    empty answer x0.3, closed-answer item without an "Answer:" line x0.8, degenerate repetition x0.8.
    Each rubric violation costs 20 % (x0.8 each)."""
    answer_target: int = 512
    answer_rate: float = 0.5
    answer_floor: float = 0.5
    think_target: int = 2048
    think_rate: float = 0.5
    think_floor: float = 0.5
    unclosed_think: float = 0.5
    empty_answer: float = 0.3
    no_answer_line: float = 0.8
    degenerate: float = 0.8
    tail_repeat_min: int = 2          # after the answer line, a segment twice is already degenerate
    loop_repeat_min: int = 3          # elsewhere, a segment three times is a loop
    min_segment_words: int = 2        # shorter segments ("Yes.", "B.") repeat legitimately
    per_violation: float = 0.2

    def __post_init__(self):
        for name in ("answer_target", "think_target"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("answer_floor", "think_floor", "unclosed_think", "empty_answer", "no_answer_line",
                     "degenerate"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.answer_rate < 0 or self.think_rate < 0:
            raise ValueError("length rates must be >= 0")
        if not 0.0 <= self.per_violation < 1.0:
            raise ValueError(f"per_violation must be in [0, 1), got {self.per_violation}")


def count_words(text: str) -> int:
    return len(text.split())


def length_factor(n: int, target: int, rate: float, floor: float) -> float:
    """max(floor, 1 - rate * excess / target), excess = max(0, n - target)."""
    excess = max(0, n - target)
    return max(floor, 1.0 - rate * excess / target)


def segment_counts(text: str, min_words: int) -> Counter:
    """How often each line/sentence of `text` occurs, normalised (lower case, words only); segments of
    fewer than `min_words` words are left out."""
    out: Counter = Counter()
    for seg in _SEGMENTS.findall(text):
        words = _WORD.findall(seg.lower())
        if len(words) >= min_words:
            out[" ".join(words)] += 1
    return out


def repeated_segment(text: str, times: int, min_words: int) -> str | None:
    """The most repeated line/sentence of `text` when it occurs at least `times` times."""
    counts = segment_counts(text, min_words)
    if not counts:
        return None
    seg, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return seg if n >= times else None


def _degenerate(answer: str, p: ShapingParams) -> tuple[str, str] | None:
    lines = list(_ANSWER_LINE.finditer(answer))
    if lines:
        seg = repeated_segment(answer[lines[0].start():], p.tail_repeat_min, p.min_segment_words)
        return ("after the answer line", seg) if seg else None
    seg = repeated_segment(answer, p.loop_repeat_min, p.min_segment_words)
    return ("in the answer", seg) if seg else None


def factor(item: RewardItem, *, params: ShapingParams = ShapingParams(), violations: int = 0) -> Score:
    """The shaping multiplier in (0, 1] for one completion; `detail["penalties"]` lists each factor
    applied ({name, factor, why}) and the word counts measured."""
    if violations < 0:
        raise ValueError(f"violations must be >= 0, got {violations}")
    p = params
    split = split_thinking(item.completion)
    answer = split.answer
    n_answer = count_words(answer)
    n_think = count_words(split.think or "")
    penalties: list[dict] = []

    def apply(name: str, f: float, why: str) -> None:
        if f < 1.0:
            penalties.append({"name": name, "factor": f, "why": why})

    apply("answer_length", length_factor(n_answer, p.answer_target, p.answer_rate, p.answer_floor),
          f"{n_answer} answer words > target {p.answer_target}")
    apply("think_length", length_factor(n_think, p.think_target, p.think_rate, p.think_floor),
          f"{n_think} reasoning words > target {p.think_target}")
    if not split.closed:
        apply("unclosed_think", p.unclosed_think, "<think> never closed")
    if not answer:
        apply("empty_answer", p.empty_answer, "no answer after the reasoning")
    else:
        if item.answer_kind in CLOSED_KINDS and not _ANSWER_LINE.search(answer):
            apply("no_answer_line", p.no_answer_line, f"{item.answer_kind} item without an 'Answer:' line")
        found = _degenerate(answer, p)
        if found:
            apply("degenerate", p.degenerate, f"repeated {found[0]}: {found[1][:80]!r}")
    if violations:
        apply("violations", (1.0 - p.per_violation) ** violations, f"{violations} rubric exclude item(s) failed")
    value = 1.0
    for pen in penalties:
        value *= pen["factor"]
    return Score(value, {"penalties": penalties, "answer_words": n_answer, "think_words": n_think})
