"""Reference-augmented pairwise reward (paper §5.2.2): a completion judged against a best-of-N reference.

An absolute judge score drifts with the judge's mood; a comparison against a fixed strong response of
the same prompt does not. The RL data carry, per prompt, a reference response chosen as the best of N
samples (`best_of_n`), and `score(item)` says how the completion compares with it:

- LLM path (with a client): the judge compares the two answers twice, the completion first as "A"
  and then second as "B" (position swap, cancelling the judge's position bias), each reply JSON
  {"winner": "A" | "B" | "tie"}. The value is the mean preference for the completion (win 1, tie 0.5,
  loss 0); the two orders disagreeing is recorded in the detail. An unusable reply (after the repair
  turn of `ask_parsed`) falls back to the local path with the failure in the detail.
- Local path: a quality q(x) = the mean of the rubric reward (`rubric.judge` with the item's rubric and
  the given static rubrics, on a copy of the item whose completion is x) and the content-word token F1
  of x's answer with the gold answer; whichever of the two is unavailable is left out. The value is
  sigmoid((q(completion) - q(reference)) / temperature_scale): 0.5 at equal quality, above 0.5 when the
  completion beats the reference. This is a heuristic stand-in for a judge model: it compares lexical
  coverage of the rubric and the gold, not clinical reasoning.

None when the item has no reference (or, on the local path, nothing to measure quality with).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from tasks.reward import rubric
from tasks.reward.item import RewardItem, Score, split_thinking

PREFERENCE = {"A": (1.0, 0.0), "B": (0.0, 1.0), "tie": (0.5, 0.5)}   # winner -> (pref for A, pref for B)

COMPARE_SYSTEM = "You are a strict medical grader comparing two answers. You answer only with JSON."
COMPARE_PROMPT = """Which answer to the question is better: more correct, complete, safe and helpful?

Question:
{query}
{gold}
Answer A:
{a}

Answer B:
{b}

Output JSON only: {{"winner": "A"}} or {{"winner": "B"}} or {{"winner": "tie"}}"""
COMPARE_REPAIR = ('That reply could not be used ({problem}). Answer again with only the JSON object '
                  '{{"winner": "A"}}, {{"winner": "B"}} or {{"winner": "tie"}}.')


def _answer_of(text: str) -> str | None:
    split = split_thinking(text)
    return split.answer if split.closed else None


def quality(item: RewardItem, response: str, *, static: rubric.StaticRubrics | None = None,
            equivalence_threshold: float = 0.5) -> tuple[float | None, dict]:
    """(q, parts) of `response` for `item`'s prompt: the mean of the available parts among the rubric
    reward and the token F1 with the gold answer; q is None when neither is available."""
    answer = _answer_of(response)
    parts: dict[str, float] = {}
    judged = rubric.judge(dataclasses.replace(item, completion=response), static=static,
                          equivalence_threshold=equivalence_threshold)
    if judged.value is not None:
        parts["rubric"] = judged.value
    gold = rubric.content_words(item.answer)
    if gold:
        parts["gold_f1"] = rubric.token_f1(rubric.content_words(answer or ""), gold)
    if not parts:
        return None, parts
    return sum(parts.values()) / len(parts), parts


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def parse_winner(reply: str) -> str:
    """"A", "B" or "tie" from {"winner": ...}; ParseError (a ValueError) otherwise."""
    from tasks.llm.parsing import ParseError, parse_json_like

    obj = parse_json_like(reply, expect=dict)
    winner = obj.get("winner")
    norm = winner.strip() if isinstance(winner, str) else ""
    norm = "tie" if norm.lower() == "tie" else norm.upper()
    if norm not in PREFERENCE:
        raise ParseError(f"'winner' must be \"A\", \"B\" or \"tie\", got {winner!r}", reply)
    return norm


def compare_chat(item: RewardItem, a: str, b: str) -> list[dict]:
    gold = f"\nReference facts (gold answer):\n{item.answer.strip()}\n" if item.answer.strip() else ""
    return [{"role": "system", "content": COMPARE_SYSTEM},
            {"role": "user", "content": COMPARE_PROMPT.format(query=item.query, gold=gold, a=a, b=b)}]


def score(item: RewardItem, *, client=None, temperature_scale: float = 0.25,
          static: rubric.StaticRubrics | None = None, **params: Any) -> Score:
    """The pairwise reward of the completion against `item.reference` (module docstring)."""
    if temperature_scale <= 0:
        raise ValueError("temperature_scale must be > 0")
    ref_answer = _answer_of(item.reference) if item.reference.strip() else None
    if not ref_answer:
        return Score(None, {"reason": "no_reference"})
    answer = _answer_of(item.completion)
    if not answer:
        return Score(0.0, {"reason": "no_answer" if answer is None else "empty_answer"})
    failure = None
    if client is not None:
        from tasks.llm.ask import ask_parsed

        chats = [compare_chat(item, answer, ref_answer), compare_chat(item, ref_answer, answer)]
        first, second = ask_parsed(client, chats, parse_winner, COMPARE_REPAIR, **{"max_tokens": 32, **params})
        if first.ok and second.ok:
            prefs = [PREFERENCE[first.value][0], PREFERENCE[second.value][1]]   # the completion is A, then B
            return Score(sum(prefs) / 2, {"judge": "llm", "winners": [first.value, second.value],
                                          "preferences": prefs, "position_consistent": prefs[0] == prefs[1],
                                          "repaired": [first.repaired, second.repaired]})
        failure = first.failure or second.failure
    q_cand, cand_parts = quality(item, item.completion, static=static)
    q_ref, ref_parts = quality(item, item.reference, static=static)
    if q_cand is None or q_ref is None:
        return Score(None, {"reason": "no_quality_signal", "failure": failure})
    return Score(_sigmoid((q_cand - q_ref) / temperature_scale),
                 {"judge": "local", "q_candidate": q_cand, "q_reference": q_ref, "candidate": cand_parts,
                  "reference": ref_parts, "temperature_scale": temperature_scale, "failure": failure})


def best_of_n(candidates: Sequence[str], item_without_completion: RewardItem, *,
              static: rubric.StaticRubrics | None = None) -> tuple[int, list[float]]:
    """(index, qualities) of the best of N sampled responses by the local quality q (ties: lowest
    index). ValueError when there are no candidates or the item gives nothing to measure quality with."""
    if not candidates:
        raise ValueError("best_of_n needs at least one candidate")
    base = dataclasses.replace(item_without_completion, reference="")
    scores = []
    for c in candidates:
        q, _ = quality(base, c, static=static)
        if q is None:
            raise ValueError(f"{base.prompt_id}: no rubric items and no gold answer to rank candidates by")
        scores.append(q)
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best, scores
