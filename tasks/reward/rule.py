"""Rule-based rewards (paper §5.2.2): deterministic verifiers for closed answers and instructions.

`score(item)` grades the answer part of a completion (after its reasoning) against the gold:

- choice: the option letter `eval.parsing.parse_choice` reads, against the gold letter (the letter of
  the option whose text is `item.answer`, or `item.answer` itself when it is a letter): 1 or 0.
- judgement: the yes/no/maybe label `parse_label` reads: 1 or 0.
- fill: the phrase `extract_open` reads is right when it equals the gold after `normalize_answer`, or
  the gold is numeric and `quantities_match` (25 mm == 2.5 cm), or it full-matches the item's
  `meta["answer_regex"]` (case-insensitive, on the normalized phrase): 1 or 0.
- set: partial credit. The answer is split into elements (commas, semicolons, " and ", newlines,
  bullets), each normalized and matched one-to-one against the gold elements (equal after
  `normalize_answer`, or one contains the other as whole words); the matching is a maximum bipartite
  matching, so one vague element cannot claim two golds. Precision, recall, F1 and Jaccard go to the
  detail; the value is F1 (`metric="jaccard"` for Jaccard). Repeated elements count once.
- open: not applicable (None): open answers go to the rubric and pairwise graders.

The kind is `router.answer_kind(item)`: the metadata's, or "set" when the query asks for a list and
the item has an `answer_set`. A completion whose <think> block is never closed has no answer: 0.0 with
reason "no_answer". An item without a usable gold is not gradable: None with reason "no_gold".

`instruct(item)` is the instruction-following reward: the fraction of `item.constraints` the answer
satisfies under the strict IFEval check; the loose fraction is in the detail.
"""

from __future__ import annotations

import re
import string

from eval.constraints import Constraint
from eval.parsing import extract_open, is_numeric_answer, normalize_answer, parse_choice, parse_label, quantities_match
from tasks.reward.item import RewardItem, Score, split_thinking
from tasks.reward.router import answer_kind

LABELS = ("yes", "no", "maybe")
METRICS = ("f1", "jaccard")
_SPLIT = re.compile(r"[,;\n]|(?:^|\s)[•·▪◦]\s")        # element separators of a set answer (and " and ")
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*+•·▪◦]|\d+[.)]|\(?[a-z]\))\s+", re.IGNORECASE)
_LEAD_WORD = re.compile(r"^(?:and|or)\s+")


def _answer(item: RewardItem) -> str | None:
    """The answer part of the completion; None when the reasoning is never closed."""
    split = split_thinking(item.completion)
    return split.answer if split.closed else None


def _no_answer(kind: str) -> Score:
    return Score(0.0, {"kind": kind, "reason": "no_answer"})


def score(item: RewardItem, *, metric: str = "f1", kind: str | None = None) -> Score:
    """The rule reward of a closed answer (module docstring); None for open answers."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    kind = kind or answer_kind(item)
    if kind == "open":
        return Score(None, {"kind": kind, "reason": "open_answer"})
    grader = {"choice": _choice, "judgement": _judgement, "fill": _fill, "set": _set}.get(kind)
    if grader is None:
        raise ValueError(f"unknown answer kind {kind!r}")
    answer = _answer(item)
    if answer is None:
        return _no_answer(kind)
    return grader(item, answer, metric)


# ---- choice / judgement -------------------------------------------------------------------------
def gold_letter(item: RewardItem) -> str | None:
    """The letter of the option whose text is the gold (exact, then normalized), else the gold itself
    when it is one of the letters."""
    letters = string.ascii_uppercase[:len(item.options)]
    gold = item.answer.strip()
    for same in (lambda o: o.strip() == gold, lambda o: normalize_answer(o) == normalize_answer(gold)):
        hits = [letter for letter, opt in zip(letters, item.options) if same(opt)]
        if len(hits) == 1:
            return hits[0]
    bare = gold.strip("()[]. ").upper()
    return bare if len(bare) == 1 and bare in letters else None


def _choice(item: RewardItem, answer: str, metric: str) -> Score:
    gold = gold_letter(item)
    if gold is None:
        return Score(None, {"kind": "choice", "reason": "no_gold", "gold": item.answer})
    parsed = parse_choice(answer, dict(zip(string.ascii_uppercase, item.options)))
    return Score(float(parsed.value == gold),
                 {"kind": "choice", "parsed": parsed.value, "gold": gold, "failure": parsed.failure,
                  "rule": parsed.rule})


def _judgement(item: RewardItem, answer: str, metric: str) -> Score:
    gold = normalize_answer(item.answer)
    if gold not in LABELS:
        return Score(None, {"kind": "judgement", "reason": "no_gold", "gold": item.answer})
    parsed = parse_label(answer, LABELS)
    return Score(float(parsed.value == gold),
                 {"kind": "judgement", "parsed": parsed.value, "gold": gold, "failure": parsed.failure,
                  "rule": parsed.rule})


# ---- fill -----------------------------------------------------------------------------------------
def _fill(item: RewardItem, answer: str, metric: str) -> Score:
    regex = item.meta.get("answer_regex")
    if not item.answer.strip() and not regex:
        return Score(None, {"kind": "fill", "reason": "no_gold"})
    parsed = extract_open(answer)
    detail = {"kind": "fill", "extracted": parsed.value, "gold": item.answer, "failure": parsed.failure,
              "matched_by": None}
    if parsed.value is None:
        return Score(0.0, detail)
    norm = normalize_answer(parsed.value)
    detail["normalized"] = norm
    if item.answer.strip() and norm == normalize_answer(item.answer):
        detail["matched_by"] = "exact"
    elif item.answer.strip() and is_numeric_answer(item.answer) and quantities_match(parsed.value, item.answer):
        detail["matched_by"] = "quantity"
    elif regex:
        try:
            if re.fullmatch(regex, norm, re.IGNORECASE):
                detail["matched_by"] = "regex"
        except re.error as e:                      # a broken pattern is a data error, not a wrong answer
            detail["regex_error"] = str(e)
    return Score(float(detail["matched_by"] is not None), detail)


# ---- set ------------------------------------------------------------------------------------------
def split_elements(text: str, keep: tuple[str, ...] = ()) -> list[str]:
    """The normalized elements of a list answer, first occurrence order, duplicates dropped; a segment
    ending in ":" is a lead-in and skipped. A segment is split on " and " unless it contains one of the normalized phrases in `keep` that itself holds
    "and" (a gold element like "nausea and vomiting" stays whole)."""
    keep_and = [k for k in keep if " and " in f" {k} "]
    out: list[str] = []
    for seg in _SPLIT.split(text):
        seg = _BULLET.sub("", seg.strip())
        if seg.endswith(":"):                      # a lead-in ("Nephrotoxic drugs:"), not an element
            continue
        norm_seg = normalize_answer(seg)
        whole = any(f" {k} " in f" {norm_seg} " for k in keep_and)
        for part in ([seg] if whole else _AND.split(seg)):
            norm = _LEAD_WORD.sub("", normalize_answer(part))
            if norm and norm not in out:
                out.append(norm)
    return out


def elements_match(pred: str, gold: str) -> bool:
    """Equal after normalization, or one contains the other as whole words (both normalized)."""
    return pred == gold or f" {gold} " in f" {pred} " or f" {pred} " in f" {gold} "


def max_matching(preds: list[str], golds: list[str]) -> list[tuple[int, int]]:
    """A maximum one-to-one matching of predicted to gold elements (Kuhn's augmenting paths; inputs
    are tiny). Deterministic: earlier predictions try earlier golds first. Pairs sorted by prediction."""
    edges = [[j for j, g in enumerate(golds) if elements_match(p, g)] for p in preds]
    owner: dict[int, int] = {}                      # gold index -> prediction index

    def augment(i: int, seen: set[int]) -> bool:
        for j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(preds)):
        augment(i, set())
    return sorted((i, j) for j, i in owner.items())


def set_metrics(preds: list[str], golds: list[str]) -> dict[str, float]:
    """Precision, recall, F1 and Jaccard of a maximum matching (each 0 when undefined)."""
    m = len(max_matching(preds, golds))
    p = m / len(preds) if preds else 0.0
    r = m / len(golds) if golds else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    union = len(preds) + len(golds) - m
    return {"matched": m, "precision": p, "recall": r, "f1": f1, "jaccard": m / union if union else 0.0}


def _set_text(answer: str) -> str:
    """The list part: a tagged/boxed/"Answer:" phrase when the reply states one, else the whole reply
    (a bulleted list spans lines, which `extract_open`'s first-line fallback would cut)."""
    parsed = extract_open(answer)
    return parsed.value if parsed.value and parsed.rule in ("answer_tag", "boxed", "answer_statement") else answer


def _set(item: RewardItem, answer: str, metric: str) -> Score:
    gold_src = list(item.answer_set) if item.answer_set else [item.answer]
    golds: list[str] = []
    for g in gold_src:
        for e in (split_elements(g) if not item.answer_set else [normalize_answer(g)]):
            if e and e not in golds:
                golds.append(e)
    if not golds:
        return Score(None, {"kind": "set", "reason": "no_gold"})
    preds = split_elements(_set_text(answer), keep=tuple(golds))
    metrics = set_metrics(preds, golds)
    pairs = max_matching(preds, golds)
    return Score(metrics[metric], {"kind": "set", "metric": metric, **metrics, "elements": preds, "gold": golds,
                                   "pairs": [[preds[i], golds[j]] for i, j in pairs]})


# ---- instructions -------------------------------------------------------------------------------
def instruct(item: RewardItem) -> Score:
    """The fraction of `item.constraints` the answer satisfies (strict); None without constraints.
    A constraint that does not parse is listed under "invalid" and left out of both fractions."""
    if not item.constraints:
        return Score(None, {"reason": "no_constraints"})
    answer = _answer(item)
    if answer is None:
        return Score(0.0, {"reason": "no_answer", "n": len(item.constraints)})
    checks, invalid = [], []
    for c in item.constraints:
        try:
            con = Constraint.from_json(c)
        except (ValueError, KeyError, TypeError) as e:
            invalid.append({"constraint": c, "error": str(e)})
            continue
        checks.append({"kind": con.kind, "strict": con.check(answer), "loose": con.check_loose(answer)})
    if not checks:
        return Score(None, {"reason": "no_valid_constraints", "invalid": invalid})
    strict = sum(c["strict"] for c in checks) / len(checks)
    loose = sum(c["loose"] for c in checks) / len(checks)
    return Score(strict, {"strict": strict, "loose": loose, "checks": checks, "invalid": invalid})
