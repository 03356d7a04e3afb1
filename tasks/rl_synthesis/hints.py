"""Hierarchical hints per prompt (paper §5.2.3, the dynamic hint curriculum): three levels, coarse to
near-answer, written by code from the prompt's own answer and structure (templates, not an LLM):

    level 1  strategy: how to approach this kind of question
    level 2  key evidence: options ruled out, the size of the answer set, the allergy to respect
    level 3  near-answer: the answer's first letters, one element of the set, one option left to doubt

The RL stage decides which prompts carry a hint and how deep (tasks/rl_training/hints.py): denser and
deeper early, decayed linearly over iterations.
"""

from __future__ import annotations

import numpy as np

from eval.constraints import Constraint

LETTERS = "ABCDEFGHIJ"


def _strategy(p: dict) -> str:
    kind, task = p["answer_kind"], p["task"]
    if task == "instruct":
        rules = "; ".join(Constraint.from_json(c).instruction for c in p["constraints"])
        return f"Check every requirement before you answer: {rules}"
    if task == "conflict":
        return "Remember what the patient told you earlier in the conversation before you recommend anything."
    if task == "tool":
        return "The search results contain the answer; find the passage that links the question's subject to it."
    return {"choice": "Consider what each option has to do with the question and rule out those that do not fit.",
            "judgement": "Decide whether the evidence given supports the claim, then answer yes, no or maybe.",
            "fill": "The answer is a short medical term; name it precisely.",
            "set": "More than one item is correct; name each of them.",
            "open": "Cover the key facts a clinician would expect, precisely and briefly."}[kind]


def _evidence(p: dict, rng: np.random.Generator) -> str:
    kind = p["answer_kind"]
    if p["task"] == "conflict":
        return f"The patient is allergic to {p['meta']['allergy']}, so it must not be recommended."
    if kind == "choice":
        gold = _gold_index(p)
        wrong = [i for i in range(len(p["options"])) if i != gold]
        out = sorted(rng.choice(wrong, size=min(2, len(wrong) - 1 if len(wrong) > 1 else 1), replace=False))
        return "Options " + " and ".join(LETTERS[i] for i in out) + " can be ruled out."
    if kind == "set":
        return f"There are {len(p['answer_set'])} items to name."
    if kind == "judgement":
        return "The last sentences of the context state the study's conclusion."
    words = p["answer"].split()
    return f"The answer has {len(words)} word{'s' if len(words) != 1 else ''}."


def _near(p: dict) -> str:
    kind = p["answer_kind"]
    if kind == "set":
        return f"One of them is {p['answer_set'][0]}."
    if kind == "choice":
        return f"The correct option's text begins with '{p['options'][_gold_index(p)][:3]}'."
    if kind == "judgement":
        return f"The answer is one word that begins with '{p['answer'][:1]}'."
    return f"The answer begins with '{p['answer'][:3]}'."


def _gold_index(p: dict) -> int:
    ans = p["answer"].strip()
    if ans in p["options"]:
        return p["options"].index(ans)
    if len(ans) == 1 and ans.upper() in LETTERS[: len(p["options"])]:
        return LETTERS.index(ans.upper())
    low = [o.lower() for o in p["options"]]
    return low.index(ans.lower()) if ans.lower() in low else 0


def hints_for(prompt: dict, seed: int) -> list[str]:
    """The three levels for one prompt (seeded by the prompt id: the same hints on every run)."""
    rng = np.random.default_rng([seed, int(prompt["id"].rsplit("-", 1)[-1][:8], 16)])
    return [_strategy(prompt), _evidence(prompt, rng), _near(prompt)]
