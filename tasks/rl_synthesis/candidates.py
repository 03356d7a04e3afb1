"""Candidate RL prompts (paper §5.2.1): the SFT pools, plus RL-specific instances built from the KG.

    out = from_sft_set("data/sft_data/samples", thinking=True)        # GateOutcome of prompt records
    out = kg_scenarios(edges, nodes, tool, params, seed, thinking)    # tool-assisted, conflict, multi-answer

From the SFT set: the first user turn of every text sample whose answer a rule or its constraints can
check (choice, judgement, fill; instruction-following samples with their constraints), and open answers
as judge-scored prompts. Samples with images or tool turns are left to their own builders (a reason
each: RL here is text-only; tool-assisted prompts are rebuilt below with the tool really run).

RL-specific (the KG's extracted relations, `pattern`/`medquad`/`cid` edges, never co-occurrence):
- tool-assisted: a KG question whose answer the corpus search tool (tasks/mid_synthesis/search_tool.py,
  BM25 over the cleaned corpus) is run for; its call and its real results are the history, the policy
  answers from them. Kept only when a returned passage names the answer (otherwise `no_evidence`);
- multi-turn conflict: a patient states a disease and an allergy to one of its KG treatments, then
  asks what could treat it; the reference is the set of the other treatments, and the rubric excludes
  the drug the patient is allergic to;
- multi-answer: "name the symptoms of X" with the KG's symptom set (set-theoretic partial credit).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from tasks.mid_synthesis.samples import GateOutcome, tool_call
from tasks.mid_synthesis.search_tool import render_results
from tasks.rl_synthesis.prompts import make_prompt
from tasks.training.splits import read_samples

KG_KINDS = ("pattern", "medquad", "cid")
# the answer-format sentences sft_data appends (tasks/sft_synthesis/pools.py): RL states the eval's own
# format line instead. Matched exactly: an instruction-following prompt's last line is its constraints
SFT_FORMATS = ("Answer with the letter of the correct option.", "Answer yes or no.", "Answer with a short phrase.",
               "Answer yes, no or maybe, then explain.")
_RELATION_QUESTION = {
    "treated_by": ("What can be used to treat {head}?", "{head} treatment"),
    "caused_by": ("What can cause {head}?", "{head} caused by"),
    "has_symptom": ("Which symptom is characteristic of {head}?", "{head} symptoms"),
    "diagnosed_by": ("Which test is used to diagnose {head}?", "{head} diagnosis test"),
    "has_risk_factor": ("What is a risk factor for {head}?", "{head} risk factor"),
    "has_complication": ("What is a complication of {head}?", "{head} complication"),
    "prevented_by": ("What can prevent {head}?", "{head} prevention"),
}


@dataclasses.dataclass
class ScenarioParams:
    tool: int = 24                  # tool-assisted instances (seeded draw of KG edges)
    conflict: int = 24              # multi-turn allergy-conflict scenarios
    multi: int = 24                 # multi-answer (symptom sets)
    max_set: int = 5                # elements of a reference set (the rest are left out, counted)
    search_k: int = 5               # passages the tool returns


def _query_text(sample: dict) -> str | None:
    first = next((m for m in sample["messages"] if m.get("role") == "user"), None)
    if first is None or not isinstance(first.get("content"), str):
        return None
    text = first["content"].rstrip()
    if not (sample.get("meta") or {}).get("constraints"):
        for tail in SFT_FORMATS:
            if text.endswith("\n" + tail):
                return text[: -len(tail) - 1].strip()
    return text.strip()


def from_sft_set(samples_dir: str | Path, *, thinking: bool) -> GateOutcome:
    """One candidate per SFT sample (rejected ones with the reason)."""
    out = GateOutcome()
    samples, bad = read_samples(samples_dir)
    for b in bad:
        out.read += 1
        out.reject("read", b.get("reason", "bad_line"), b.get("detail", ""), b.get("locator"))
    for s in samples:
        out.read += 1
        meta, loc = s.get("meta") or {}, s.get("id")
        if s.get("images"):
            out.reject("select", "image_prompt", "RL prompts are text-only here", loc)
            continue
        if s.get("tools") or any(m.get("tool_calls") for m in s.get("messages", [])):
            out.reject("select", "tool_sample", "tool-assisted prompts are rebuilt with the tool run", loc)
            continue
        query = _query_text(s)
        kind = meta.get("answer_kind")
        if not query or not meta.get("answer") or kind not in ("choice", "judgement", "fill", "open"):
            out.reject("select", "no_checkable_answer", f"answer_kind={kind}", loc)
            continue
        history = [m for m in s["messages"][: s["messages"].index(next(m for m in s["messages"]
                                                                      if m.get("role") == "user"))]
                   if m.get("role") != "system"]
        constraints = list(meta.get("constraints") or [])
        task = ("instruct" if constraints else "closed" if kind != "open" else "open")
        options = list(meta.get("options") or [])
        if kind == "choice" and len(options) < 2:
            options = re.findall(r"^[A-J][.)]\s*(.+)$", query, re.M)
            if len(options) < 2:
                out.reject("select", "options_unreadable", "a choice sample without readable options", loc)
                continue
        out.kept.append(make_prompt(task, history, query, answer=str(meta["answer"]), answer_kind=kind,
                                    thinking=thinking, source=f"sft:{s.get('family')}",
                                    source_ids=[s["id"], *s.get("source_ids", [])], options=options,
                                    constraints=constraints, sft_id=s["id"]))
    return out


def _kg(edges_path: Path, nodes_path: Path):
    types = {}
    for line in nodes_path.open(encoding="utf-8"):
        n = json.loads(line)
        types[n["norm"]] = n["type"]
    edges = []
    for line in edges_path.open(encoding="utf-8"):
        e = json.loads(line)
        if e.get("kind") in KG_KINDS and e.get("relation") in _RELATION_QUESTION:
            edges.append({k: e[k] for k in ("id", "head", "tail", "relation", "kind")})
    return edges, types


def _names(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.I) is not None


def kg_scenarios(edges_path: str | Path, nodes_path: str | Path, tool, params: ScenarioParams, seed: int,
                 *, thinking: bool) -> dict[str, GateOutcome]:
    """{"tool": ..., "conflict": ..., "multi": ...}: every considered KG item is read and kept or rejected."""
    edges, types = _kg(Path(edges_path), Path(nodes_path))
    rng = np.random.default_rng(seed)
    return {"tool": _tool_prompts(edges, tool, params, rng, thinking),
            "conflict": _conflicts(edges, types, params, rng, thinking),
            "multi": _symptom_sets(edges, params, rng, thinking)}


def _draw(rng, items: list, n: int) -> list:
    idx = rng.permutation(len(items))[:n] if items else []
    return [items[i] for i in sorted(idx)]


def _tool_prompts(edges, tool, params: ScenarioParams, rng, thinking: bool) -> GateOutcome:
    out = GateOutcome()
    for e in _draw(rng, [e for e in edges if len(e["tail"]) > 2 and len(e["head"]) > 2], params.tool):
        out.read += 1
        question, query = (t.format(head=e["head"]) for t in _RELATION_QUESTION[e["relation"]])
        results = tool.search(query, params.search_k) if tool is not None else []
        if not any(_names(r["text"], e["tail"]) for r in results):
            out.reject("tool", "no_evidence", f"no passage for {query!r} names {e['tail']!r}", f"kg-edge:{e['id']}")
            continue
        history = [{"role": "user", "content": question},
                   {"role": "assistant", "content": "", "tool_calls": [tool_call("search", {"query": query,
                                                                                          "k": params.search_k})]},
                   {"role": "tool", "name": "search", "content": render_results(results)}]
        out.kept.append(make_prompt("tool", history, f"Using the search results, answer: {question}",
                                    answer=e["tail"], answer_kind="fill", thinking=thinking, source="kg:tool",
                                    source_ids=[f"kg-edge:{e['id']}", *(r["passage_id"] for r in results)],
                                    relation=e["relation"], head=e["head"]))
    return out


def _grouped(edges, relation: str, keep=lambda tail: True) -> dict[str, list[str]]:
    by: dict[str, set] = defaultdict(set)
    for e in edges:
        if e["relation"] == relation and keep(e["tail"]):
            by[e["head"]].add(e["tail"])
    return {h: sorted(t) for h, t in sorted(by.items())}


def _conflicts(edges, types, params: ScenarioParams, rng, thinking: bool) -> GateOutcome:
    out = GateOutcome()
    drugs = _grouped(edges, "treated_by", lambda t: types.get(t) == "Chemical")
    heads = list(drugs)
    for head in _draw(rng, heads, params.conflict):
        out.read += 1
        options = drugs[head]
        if len(options) < 2:
            out.reject("conflict", "single_treatment", f"{head}: one KG treatment, no alternative", head)
            continue
        allergic = options[int(rng.integers(len(options)))]
        rest = [d for d in options if d != allergic][: params.max_set]
        history = [{"role": "user", "content": f"I have been diagnosed with {head}. I should mention that I am "
                                               f"allergic to {allergic}."},
                   {"role": "assistant", "content": f"Thank you, I will keep your {allergic} allergy in mind."}]
        rubric = [{"id": "conflict-exclude", "text": f"does not recommend {allergic}", "kind": "exclude",
                   "terms": [allergic], "weight": 2.0, "origin": "dynamic"},
                  {"id": "conflict-alternative", "text": "names an alternative treatment", "kind": "include",
                   "terms": rest, "weight": 1.0, "origin": "dynamic"}]
        out.kept.append(make_prompt("conflict", history, f"Which medicines could treat my {head}? List them.",
                                    answer=", ".join(rest), answer_kind="set", answer_set=rest, rubric=rubric,
                                    thinking=thinking, source="kg:conflict", source_ids=[f"kg-node:{head}"],
                                    allergy=allergic, head=head))
    return out


def _symptom_sets(edges, params: ScenarioParams, rng, thinking: bool) -> GateOutcome:
    out = GateOutcome()
    sets = _grouped(edges, "has_symptom")
    for head in _draw(rng, list(sets), params.multi):
        out.read += 1
        if len(sets[head]) < 2:
            out.reject("multi", "single_answer", f"{head}: one KG symptom", head)
            continue
        gold = sets[head][: params.max_set]
        out.kept.append(make_prompt("multi", [], f"Name the main symptoms of {head}.", answer=", ".join(gold),
                                    answer_kind="set", answer_set=gold, thinking=thinking, source="kg:multi",
                                    source_ids=[f"kg-node:{head}"], head=head, set_size=len(sets[head])))
    return out
