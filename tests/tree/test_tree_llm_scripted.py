"""The LLM paths (attacher, namer, ReAct resolver) against a scripted OpenAI-compatible endpoint
(stdlib http.server on 127.0.0.1): every kind of reply -- valid, truncated, empty, off-format, invalid
path, HTTP error -- ends attached, named or decided, or recorded with its raw reply; never lost."""

from __future__ import annotations

import numpy as np
import pytest
from scripted_endpoint import scripted

from tasks.tree.attach import Candidate, Decision, LLMAttacher, attach_all
from tasks.tree.build import FrozenCore
from tasks.tree.conflicts import EvidenceIndex, LLMResolver, LocalResolver, ResolverParams
from tasks.tree.embed import Entity
from tasks.tree.model import ENTITY, Node, Tree, validate_tree
from tasks.tree.name import LLMNamer


def core_tree() -> Tree:
    t = Tree([Node("c", "Medical Entity Tree", None, 0), Node("c1", "Disease", "c", 1),
              Node("c1.1", "neurological disorders", "c1", 2), Node("c1.2", "digestive symptoms", "c1", 2)])
    for norm, parent, freq in [("epilepsy", "c1.1", 9), ("temporal lobe lesion", "c1.1", 5),
                               ("nausea", "c1.2", 9), ("vomiting", "c1.2", 8)]:
        t.add(Node(f"e:{norm}", norm, parent, 3, ENTITY, [norm], freq, True))
    t.refresh()
    return t


def frozen_core() -> FrozenCore:
    t = core_tree()
    ids = ("c", "c1", "c1.1", "c1.2")
    m = np.eye(4, dtype=np.float32)
    m.setflags(write=False)
    return FrozenCore(t, ids, m, {i: j for j, i in enumerate(ids)}, {"Disease": "c1"}, t.fingerprint())


def ent(text: str) -> Entity:
    return Entity(text.lower(), text, "Disease", 1, 1, [{"text": text, "type": "Disease", "count": 1}])


VALID = "<Reason>{why}</Reason><InsertionPath>{path}</InsertionPath>"


def attach_reply(messages):
    user = messages[1]["content"]
    entity = user.rsplit("\n", 1)[-1]
    repair = len(messages) > 2
    if entity == "ERR-ENT":
        return 400, ""
    script = {
        "OK-ENT": [VALID.format(why="neuro", path="Disease.neurological disorders.OK-ENT")],
        "FIX-ENT": ["<Reason>gut</Reason><InsertionPath>Disease.diges",          # truncated
                    VALID.format(why="gut", path="Medical Entity Tree.Disease.Digestive Symptoms")],
        "EMPTY-ENT": ["", "   "],
        "BAD-ENT": [VALID.format(why="x", path="Disease.cardiology.BAD-ENT"),
                    VALID.format(why="x", path="Cardiology.BAD-ENT")],
        "UNC-ENT": ["<Reason>unclear</Reason><Reasoning>not a medical entity</Reasoning>"],
        "TWO-ENT": [VALID.format(why="both", path="Disease.digestive symptoms.TWO-ENT")
                    + VALID.format(why="both", path="Disease.neurological disorders.TWO-ENT")],
        "DOT.ENT": [VALID.format(why="dots", path="Disease.neurological disorders.DOT.ENT")],
    }[entity]
    return 200, script[min(int(repair), len(script) - 1)]


def test_llm_attacher_records_every_reply_kind(tmp_path):
    names = ["OK-ENT", "FIX-ENT", "EMPTY-ENT", "BAD-ENT", "UNC-ENT", "TWO-ENT", "ERR-ENT", "DOT.ENT"]
    core = frozen_core()
    working = core.tree.copy()
    with scripted(attach_reply, tmp_path) as (client, requests):
        att = LLMAttacher(client, core, tree_max_chars=2000)
        res = attach_all([ent(n) for n in names], None, core, working, att,
                         LocalResolver(core.tree, EvidenceIndex([])), batch_size=4, max_tiers=5)
    assert "Disease.neurological disorders\nDisease.digestive symptoms" in requests[0]["messages"][1]["content"]
    placed = {a["text"]: a["path"] for a in res.attachments}
    assert placed == {"OK-ENT": "Disease.neurological disorders", "FIX-ENT": "Disease.digestive symptoms",
                      "TWO-ENT": "Disease.neurological disorders",   # conflict -> resolver's choice
                      "DOT.ENT": "Disease.neurological disorders"}
    assert {a["text"]: a["reason"] for a in res.attachments}["OK-ENT"] == "neuro"
    unc = {u["text"]: u for u in res.unclassified}
    assert unc["EMPTY-ENT"]["reason"] == "llm_empty_reply" and unc["EMPTY-ENT"]["raw_replies"] == ["", "   "]
    assert unc["BAD-ENT"]["reason"] == "llm_invalid_path" and "Cardiology.BAD-ENT" in unc["BAD-ENT"]["detail"]
    assert len(unc["BAD-ENT"]["raw_replies"]) == 2
    assert unc["UNC-ENT"]["reason"] == "llm_unclassifiable" and unc["UNC-ENT"]["detail"] == "not a medical entity"
    assert unc["ERR-ENT"]["reason"] == "llm_request_failed"
    assert len(res.attachments) + len(res.unclassified) == len(names)
    assert [a["entity"] for a in res.audits] == ["two-ent"]
    # one repair turn for the truncated, empty and invalid replies only; none for the rest
    assert att.stats == {"asked": 8, "parsed_first": 3, "parsed_after_repair": 1, "repairs": 3,
                         "unclassifiable": 1, "failed": 3,
                         # the whole core (3 paths) fits in 2000 characters: nothing cut
                         "core_paths_available": 3, "core_paths_shown_mean": 3.0, "prompts_truncated": 0,
                         "type_branch_cut": 0, "answer_not_shown": 0, "unclassified_after_truncation": 0}
    assert all(r["core_paths_shown"] == r["core_paths_available"] == 3 for r in res.attachments + res.unclassified)
    assert all(a["parent_shown"] for a in res.attachments)
    assert len(requests) == 8 + 3
    repair_prompt = [r["messages"] for r in requests if len(r["messages"]) > 2][0][-1]["content"]
    assert "cut off" in repair_prompt or "empty" in repair_prompt or "not in the tree" in repair_prompt
    working.refresh()
    validate_tree(working.to_json())


def test_llm_namer_falls_back_and_records(tmp_path):
    tree = core_tree()
    emb = {"c1.1": np.array([1, 0], np.float32), "c1.2": np.array([0, 1], np.float32)}
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    by_norm = {"epilepsy": 0, "temporal lobe lesion": 1, "nausea": 2, "vomiting": 3}

    def reply(messages):
        u = messages[1]["content"]
        return 200, ("<Name>Neurologic disease</Name>" if "epilepsy" in u else "Name: Gut stuff")

    with scripted(reply, tmp_path) as (client, _):
        namer = LLMNamer(client)
        namer.name(tree, emb, x, by_norm, fixed={"c", "c1"})
    assert tree.nodes["c1.1"].name == "Neurologic disease"
    assert tree.nodes["c1.2"].name == "digestive symptoms"            # local name kept
    assert namer.stats == {"asked": 2, "named": 1, "failed": 1}
    assert namer.failures[0]["raw"] == "Name: Gut stuff" and namer.failures[0]["node"] == "c1.2"


def react_reply(messages):
    task = messages[1]["content"]
    turn = sum(m["role"] == "assistant" for m in messages)
    final = ("<SearchEvidence>damage to both temporal lobes</SearchEvidence><Reasoning>Etiology is "
             "temporal lobe damage, so the neurological path wins.</Reasoning>"
             "<FinalAction>Keep: {keep}, Delete: Disease.digestive symptoms</FinalAction>")
    if '"Kluver-Bucy syndrome"' in task:
        return 200, ["Thought: I need the definition.\nAction: search[Kluver-Bucy syndrome temporal]",
                     final.format(keep="Disease.neurological disorders")][min(turn, 1)]
    if '"Eager"' in task:
        return 200, [final.format(keep="B"), "Thought: ok\nAction: search[temporal lobe epilepsy]",
                     final.format(keep="Path B")][min(turn, 2)]
    return 200, "I think both are fine."


def test_react_resolver_searches_decides_and_falls_back(tmp_path, data_root):
    from tasks.tree.conflicts import read_obo_definitions
    tree = core_tree()
    index = EvidenceIndex(read_obo_definitions(data_root / "vocab" / "doid_2016-09-01.obo"))
    local = LocalResolver(tree, index)
    cands = lambda: [Candidate("c1.2", "Disease.digestive symptoms", 0.5, "type:Disease"),  # noqa: E731
                     Candidate("c1.1", "Disease.neurological disorders", 0.49, "margin")]
    conflicts = [Decision(ent("Kluver-Bucy syndrome"), "llm", cands()),
                 Decision(ent("Eager"), "llm", cands()),
                 Decision(ent("Stubborn"), "llm", cands())]
    with scripted(react_reply, tmp_path) as (client, requests):
        r = LLMResolver(client, local, ResolverParams(max_steps=3))
        audits = r.resolve_batch(conflicts)
    k, eager, stubborn = audits
    assert k["decided_by"] == "llm" and k["path"] == "llm" and k["decision"]["keep_node"] == "c1.1"
    assert k["queries"] == ["Kluver-Bucy syndrome temporal"] and k["steps"] == 2
    assert "DOID:2510" in [e["doc_id"] for e in k["evidence"]]
    assert k["search_evidence"] == "damage to both temporal lobes" and "temporal lobe" in k["reasoning"]
    # a final answer before any search is refused, costs a step, then accepted after searching
    assert eager["decided_by"] == "llm" and eager["steps"] == 3 and eager["decision"]["keep_node"] == "c1.1"
    assert "no evidence yet" in eager["transcript"][1]["content"]
    # never a valid answer: the local decision is used, and the audit says so with the transcript
    assert stubborn["decided_by"] == "local_fallback" and stubborn["path"] == "llm"
    assert stubborn["llm_failure"] == "no valid FinalAction within 3 steps"
    assert [m["content"] for m in stubborn["transcript"] if m["role"] == "assistant"] == \
        ["I think both are fine."] * 3
    assert r.stats["decided"] == 2 and r.stats["fallback"] == 1 and r.stats["searches"] == 2
    assert len(requests) == 2 + 3 + 3


@pytest.mark.parametrize("status", [400, 500])
def test_react_request_failure_falls_back(tmp_path, status):
    tree = core_tree()
    local = LocalResolver(tree, EvidenceIndex([]))
    with scripted(lambda m: (status, ""), tmp_path) as (client, _):
        audits = LLMResolver(client, local, ResolverParams(max_steps=2)).resolve_batch(
            [Decision(ent("X"), "llm", [Candidate("c1.2", "Disease.digestive symptoms", 0.5),
                                        Candidate("c1.1", "Disease.neurological disorders", 0.5)])])
    assert audits[0]["decided_by"] == "local_fallback"
    assert audits[0]["llm_failure"].startswith("request_failed")
