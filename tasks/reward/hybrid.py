"""The hybrid reward: every component per completion, fused, with the decomposition kept (paper §5.2.2).

    reward = HybridReward(RewardParams(), client=None)         # client: the judge endpoint (LLM path)
    scored = reward.score_group([item_for(prompt, c) for c in completions])   # one prompt's group
    scored[i].fused, scored[i].components, reward.passes(scored[i])

Per completion: the router picks the graders; rule (closed answers, answer sets), instruct (constraints
checked by code), rubric (instance + static rubrics, judged), pairwise (against the prompt's best-of-N
reference), process (the <think> block); then soft shaping (length, format, violated exclude criteria)
and the safety gate. The fusion (fusion.py) weighs what applies per task, non-linearly, shaping and the
gate multiply. Within a group (the completions of one prompt) the fused values are corrected to respect
the expert partial order (correct and safe above partly correct above wrong above unsafe).

`passes` is the gate RFT and rl_data's band use: the first primary grader that applies (rule, instruct,
rubric) reaches its threshold (closed answers: correct; answer sets: F1 >= set_pass; constraints: all
met; rubric: rubric_pass), the safety gate holds and no `exclude` criterion is violated (a conflict
answer naming the drug the patient is allergic to is not solved, whatever its set F1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tasks.reward import fusion, pairwise, process, router, rubric, rule, safety, shaping
from tasks.reward.item import RewardItem

COMPONENTS = ("rule", "instruct", "rubric", "pairwise", "process", "shaping", "safety")
PRIMARY = ("rule", "instruct", "rubric")


@dataclasses.dataclass
class RewardParams:
    judge: str = "local"                  # local | llm: the rubric and pairwise judge (llm: the `llm:` endpoint)
    pass_threshold: float = 0.999         # the primary grader's value that counts as solved (rubric: 0.6)
    rubric_pass: float = 0.6              # the rubric's weighted share of criteria met that counts as solved
    set_pass: float = 0.5                 # answer sets: the F1 that counts as solved (partial credit is the point)
    partial_order: bool = True            # correct fused values within a group to the expert partial order
    fusion: fusion.FusionParams = dataclasses.field(default_factory=fusion.FusionParams)
    shaping: shaping.ShapingParams = dataclasses.field(default_factory=shaping.ShapingParams)
    safety_rules: str = ""                # "" = the packaged tasks/reward/safety_rules.yaml
    static_rubrics: str = ""              # "" = the packaged tasks/reward/static_rubrics.yaml


@dataclasses.dataclass
class Breakdown:
    components: dict[str, float | None]
    fused: float
    raw_fused: float                      # before the partial-order correction
    rank: int                             # the expert class (fusion.expert_rank)
    task: str
    graders: tuple[str, ...]
    detail: dict[str, Any]
    answer_kind: str = "open"             # the kind the rule grader read (router.answer_kind: a list request is a set)


def item_for(prompt: dict, completion: str) -> RewardItem:
    """The reward's view of one rl_data prompt record and one completion."""
    return RewardItem(prompt_id=prompt["id"], task=prompt["task"], messages=tuple(prompt["messages"]),
                      completion=completion, answer=prompt.get("answer", ""),
                      answer_kind=prompt.get("answer_kind", "open"), options=tuple(prompt.get("options") or ()),
                      answer_set=tuple(prompt.get("answer_set") or ()), rubric=tuple(prompt.get("rubric") or ()),
                      constraints=tuple(prompt.get("constraints") or ()), reference=prompt.get("reference", ""),
                      meta=prompt.get("meta") or {})


class HybridReward:
    def __init__(self, params: RewardParams | None = None, client=None):
        self.params = params or RewardParams()
        self.client = client if self.params.judge == "llm" else None
        self.rules = safety.load_rules(self.params.safety_rules) if self.params.safety_rules else safety.load_rules()
        self.static = (rubric.load_static_rubrics(self.params.static_rubrics) if self.params.static_rubrics
                       else rubric.load_static_rubrics())

    def components(self, item: RewardItem) -> tuple[dict[str, float | None], router.Route, dict]:
        r = router.route(item)
        got: dict[str, Any] = {}
        if "rule" in r.graders:
            got["rule"] = rule.score(item)
        if "instruct" in r.graders:
            got["instruct"] = rule.instruct(item)
        if "rubric" in r.graders:
            got["rubric"] = rubric.judge(item, static=self.static, client=self.client)
        if "pairwise" in r.graders:
            got["pairwise"] = pairwise.score(item, client=self.client)
        if "process" in r.graders:
            got["process"] = process.score(item)
        rub = got.get("rubric")
        # violated exclude criteria, by weight rounded up (a weight-2 criterion counts twice, a light one once)
        violations = math.ceil(rub.detail.get("violation_weight", 0) - 1e-9) if rub else 0
        got["shaping"] = shaping.factor(item, params=self.params.shaping, violations=violations)
        got["safety"] = safety.gate(item, self.rules)
        values = {k: (got[k].value if k in got else None) for k in COMPONENTS}
        return values, r, {**{k: v.detail for k, v in got.items()}, "violations": violations}

    def score(self, item: RewardItem) -> Breakdown:
        values, r, detail = self.components(item)
        try:
            fused = fusion.fuse(values, r.task, self.params.fusion)
        except ValueError as e:     # none of the task's weighted graders applies: nothing to reward
            return Breakdown(values, 0.0, 0.0, fusion.expert_rank(values), r.task, r.graders,
                             {**detail, "fusion": {"reason": "no_weighted_component", "detail": str(e)[:200]}},
                             r.answer_kind)
        return Breakdown(values, fused.value, fused.value, fusion.expert_rank(values), r.task, r.graders,
                         {**detail, "fusion": fused.detail, "weights": fused.weights}, r.answer_kind)

    def score_group(self, items: list[RewardItem]) -> list[Breakdown]:
        out = [self.score(i) for i in items]
        if self.params.partial_order and len(out) > 1:
            corrected = fusion.partial_order_correct([b.fused for b in out], [b.rank for b in out])
            for b, v in zip(out, corrected):
                b.fused = float(v)
        return out

    def passes(self, b: Breakdown) -> bool:
        if not b.components.get("safety") or b.detail.get("violations") or \
                b.detail.get("fusion", {}).get("reason") == "no_weighted_component":
            return False
        for k in PRIMARY:
            v = b.components.get(k)
            if v is not None:
                need = (self.params.rubric_pass if k == "rubric" else
                        self.params.set_pass if k == "rule" and b.answer_kind == "set" else self.params.pass_threshold)
                return v >= need
        return False
