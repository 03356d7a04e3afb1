"""KG-guided multi-hop QA and KG-verifiable path reasoning: hand-built graphs with hand-computed walks,
set traversals, clues and paths; every gate's rejections; the LLM roles against a scripted endpoint; the
loaders and one small engine run on the real KG and sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripted_endpoint import scripted

from tasks.mid_synthesis.experts import ChoiceQuestion
from tasks.mid_synthesis.kg_multihop import (
    Arc,
    Chain,
    Clue,
    HopStep,
    JudgeItem,
    LLMHopChooser,
    LLMQualityJudge,
    LLMReasoningWriter,
    LocalHopChooser,
    LocalQualityJudge,
    MultiHopParams,
    Step,
    TypedGraph,
    WriteRequest,
    atomic_question,
    chain_record,
    chain_records,
    clue_levels,
    fit_clues,
    load_edge_precision,
    multihop_qa,
    random_walks,
    render_question,
    traverse,
    type_pools,
)
from tasks.mid_synthesis.kg_paths import (
    KGPath,
    KGPathsParams,
    LLMPathRanker,
    LocalPathRanker,
    build_matcher,
    coverage,
    entities,
    find_paths,
    kg_paths,
    load_atomic_qa,
    load_huatuo,
    load_medquad,
    load_vqa_rad,
    siblings,
)
from tasks.mid_synthesis.samples import validate_sample

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"

# name, type, tree_path below the type
NODES = [(n, t, p) for n, t, p in [
    ("Asthma", "Disease", ["airway disease", "asthma"]),                 # 0
    ("Salbutamol", "Chemical", ["bronchodilator", "beta agonist"]),      # 1
    ("Tremor", "Symptom", ["movement sign", "tremor"]),                  # 2
    ("Parkinson disease", "Disease", ["movement disorder", "parkinsonism"]),  # 3
    ("Levodopa", "Chemical", ["dopaminergic", "precursor"]),             # 4
    ("Nausea", "Symptom", ["gastric sign", "nausea"]),                   # 5
    ("Ondansetron", "Chemical", ["antiemetic", "setron"]),               # 6
    ("Wheezing", "Symptom", ["airway sign", "wheeze"]),                  # 7 dead end
    ("Aspirin", "Chemical", ["analgesic", "nsaid"]),                     # 8
    ("Ibuprofen", "Chemical", ["analgesic", "nsaid"]),                   # 9
    ("Headache", "Disease", ["pain disorder", "headache"]),              # 10
    ("Metformin", "Chemical", ["antidiabetic", "biguanide"]),            # 11
    ("Diabetes", "Disease", ["metabolic disease", "diabetes"]),          # 12
    ("Flu", "Disease", ["infection", "influenza"]),                      # 13
    ("Cough", "Symptom", ["airway sign", "cough"]),                      # 14
    ("Fever", "Symptom", ["general sign", "fever"]),                     # 15
    ("Fatigue", "Symptom", ["general sign", "fatigue"]),                 # 16
]]
TRIPLES = [(0, "treated_by", 1), (2, "caused_by", 1), (3, "has_symptom", 2), (3, "treated_by", 4),
           (5, "caused_by", 4), (5, "treated_by", 6), (0, "has_symptom", 7), (10, "treated_by", 8),
           (10, "treated_by", 9), (12, "treated_by", 11), (13, "has_symptom", 14), (13, "has_symptom", 15),
           (13, "has_symptom", 16), (0, "co_occurs_with", 5)]


def node_records():
    return [{"norm": n.lower(), "name": n, "type": t, "tree_path": [t, *p]} for n, t, p in NODES]


def edge_records(extra=()):
    out = []
    names = [n for n, _, _ in NODES] + ["NO"]
    for i, (h, r, t) in enumerate(list(TRIPLES) + list(extra)):
        hn, tn = names[h], names[t]
        co = r == "co_occurs_with"
        out.append({"id": i, "head_idx": h, "tail_idx": t, "relation": r, "directed": not co,
                    "kind": "cooccurrence" if co else "medquad", "weight": 1.0,
                    "provenance": {"doc_ids": [f"doc-{i}"], "sentences": [
                        {"doc_id": f"doc-{i}x", "text": "An unrelated sentence first."},
                        {"doc_id": f"doc-{i}", "text": f"Here {hn} and {tn} are linked ({r})."}]}})
    return out


def graph(extra=()) -> TypedGraph:
    return TypedGraph(node_records(), edge_records(extra))


CHAIN = [0, 1, 2, 3, 4, 5, 6]      # Asthma -> Salbutamol -> Tremor -> Parkinson -> Levodopa -> Nausea -> Ondansetron


def chain_arcs(g: TypedGraph, nodes=CHAIN) -> list[Arc]:
    return [next(a for a in g.adj[u] if a.node == v) for u, v in zip(nodes, nodes[1:])]


class Probe:
    """pass@k by question text: `multi` for chain questions ("Start from"), `atomic` otherwise."""

    def __init__(self, atomic=0.0, multi=0.0):
        self.atomic, self.multi, self.calls = atomic, multi, []

    def pass_at_k(self, questions):
        self.calls.append(list(questions))
        return [self.multi if q.question.startswith("Start from") else self.atomic for q in questions]


# ----------------------------------------------------------------------------- typed graph, clues, traversal
def test_typed_graph_drops_cooccurrence_and_quotes_the_sentence_naming_both_ends():
    g = graph()
    assert all(a.relation != "co_occurs_with" for row in g.adj for a in row)
    assert 5 not in {a.node for a in g.adj[0]}                    # Asthma-Nausea co-occurrence is no arc
    assert g.degree[0] == 2 and g.degree[1] == 2 and g.degree[7] == 1
    sent, doc = g.evidence(0)
    assert sent == "Here Asthma and Salbutamol are linked (treated_by)." and doc == "doc-0"
    assert g.statement(1) == "Tremor can be caused by Salbutamol."
    nodes = node_records()
    edges = edge_records()
    edges[0]["provenance"]["sentences"] = []
    g2 = TypedGraph(nodes, edges)
    assert g2.evidence(0) == ("", "") and not g2.adj[0][0].evidence


def test_edge_precision_table_reaches_the_arcs(tmp_path):
    p = tmp_path / "edge_precision.json"
    p.write_text(json.dumps({"review": {"kept": {"by_kind_relation": {"medquad": {
        "treated_by": {"precision": 0.5}, "caused_by": {"precision": 0.25}}}}}}))
    table = load_edge_precision(p)
    assert table == {"medquad/caused_by": 0.25, "medquad/treated_by": 0.5}
    g = TypedGraph(node_records(), edge_records(), precision=table, default_precision=0.9)
    assert {a.relation: a.precision for a in g.adj[1]} == {"treated_by": 0.5, "caused_by": 0.25}
    assert g.adj[3][0].precision == 0.9                       # has_symptom: not reviewed -> the default
    assert load_edge_precision(tmp_path / "missing.json") == {}


def test_set_traversal_hand_computed():
    g = graph(extra=[(5, "treated_by", 11)])                  # Nausea is also treated with Metformin (decoy)
    arcs = chain_arcs(g)
    typeonly = [Clue(g.types[v], 0) for v in CHAIN[1:]]
    assert traverse(g, 0, arcs, typeonly, 100) == {6, 11}       # Ondansetron and Metformin are both chemicals
    deep = typeonly[:-1] + [Clue("Chemical", 2, "setron")]
    assert traverse(g, 0, arcs, deep, 100) == {6}
    # the first hop alone: Asthma treated_by -> chemicals {Salbutamol}; a symptom clue finds nothing
    assert traverse(g, 0, arcs[:1], [Clue("Chemical", 0)], 100) == {1}
    assert traverse(g, 0, arcs[:1], [Clue("Symptom", 0)], 100) == set()
    assert traverse(g, 0, arcs[:1], [Clue("Chemical", 0)], 0) is None     # over the frontier bound


def test_fit_clues_needs_the_class_only_where_it_disambiguates():
    p = MultiHopParams()
    g = graph()
    clues, reason, _ = fit_clues(g, CHAIN, chain_arcs(g), p)
    assert reason == "" and [c.level for c in clues] == [0] * 6      # unique with types alone: all coarsened
    g = graph(extra=[(5, "treated_by", 11)])
    clues, reason, _ = fit_clues(g, CHAIN, chain_arcs(g), p)
    assert [c.level for c in clues] == [0, 0, 0, 0, 0, 1]            # 'antiemetic' vs 'antidiabetic' suffices
    assert clues[-1].text() == "a chemical in the 'antiemetic' class"
    clues, reason, detail = fit_clues(g, CHAIN, chain_arcs(g), MultiHopParams(clue_depth=0))
    assert clues is None and reason == "ambiguous" and detail.startswith("2 entities")
    clues, _, _ = fit_clues(g, CHAIN, chain_arcs(g), MultiHopParams(coarsen_clues=False))
    assert [c.level for c in clues] == [2, 1, 2, 2, 1, 2]            # 'tremor', 'nausea' classes name the node


def test_clue_levels_skip_a_label_that_names_a_hidden_entity():
    g = graph()
    from tasks.mapping.automaton import key_of
    # Nausea's level-2 class is 'nausea' (its own name) and level 1 'gastric sign'
    assert clue_levels(g, 5, [key_of("Nausea")], 2) == [1, 0]
    assert clue_levels(g, 5, [key_of("gastric sign")], 2) == [2, 0]
    assert clue_levels(g, 5, [], 0) == [0]


# ----------------------------------------------------------------------------- walks and choosers
def test_local_chooser_prefers_low_degree_neighbours():
    g = graph()
    hi, lo = Arc(13, 0, "treated_by", True, True, 1.0, True), Arc(7, 1, "treated_by", True, True, 1.0, True)
    assert g.degree[13] == 3 and g.degree[7] == 1
    picks = LocalHopChooser(1.0).choose(g, [HopStep((0,), (), (hi, lo), u / 100) for u in range(100)])
    assert picks.count(1) == 75                                 # weights 1/3 vs 1/1 -> 3/4 of the mass
    picks = LocalHopChooser(0.0).choose(g, [HopStep((0,), (), (hi, lo), u / 100) for u in range(100)])
    assert picks.count(1) == 50


def test_walks_restart_from_dead_ends_never_revisit_and_are_seeded():
    g = graph()
    p = MultiHopParams(min_hops=6, max_hops=6, max_restarts=3)
    walks = [random_walks(g, [0], LocalHopChooser(), p, seed=s)[0] for s in range(12)]
    for w in walks:
        assert w.failure is None and w.nodes == CHAIN               # the only 6-hop path from Asthma
        assert w.restarts == (7 in w.dead)                           # Wheezing: taken once, then barred
    assert any(w.restarts for w in walks) and not all(w.restarts for w in walks)
    again = random_walks(g, [0], LocalHopChooser(), p, seed=3)[0]
    assert (again.nodes, again.restarts) == (walks[3].nodes, walks[3].restarts)
    w = random_walks(g, [0], LocalHopChooser(), MultiHopParams(min_hops=7, max_hops=7, max_restarts=2), seed=0)[0]
    assert w.failure[0] == "dead_end"
    w = random_walks(g, [11], LocalHopChooser(), MultiHopParams(max_node_degree=0), seed=0)[0]
    assert w.failure[0] == "no_exit"


def test_atomic_probe_question_distractors_are_unlinked_same_type_nodes():
    g = graph()
    q = atomic_question(g, 10, type_pools(g), MultiHopParams(), seed=5)     # Headache: treated_by Aspirin|Ibuprofen
    assert isinstance(q, ChoiceQuestion) and q.question == "Which of the following is a treatment for Headache?"
    gold = q.options[q.gold]
    assert gold in ("Aspirin", "Ibuprofen") and len(q.options) == 4 and len(set(q.options)) == 4
    others = set(q.options) - {gold}
    assert not others & {"Aspirin", "Ibuprofen"} and others <= {"Salbutamol", "Levodopa", "Ondansetron", "Metformin"}
    assert atomic_question(g, 10, type_pools(g), MultiHopParams(), seed=5) == q


# ----------------------------------------------------------------------------- the multi-hop engine
def run_multihop(probe, **kw):
    p = MultiHopParams(max_probe_entities=50, min_question_chars=20, **kw)
    st = {}
    return multihop_qa(graph(), probe, p, seed=7, stats=st), st


def test_multihop_end_to_end_on_a_hand_built_graph():
    out, st = run_multihop(Probe(atomic=0.0, multi=0.25), min_typed_degree=1)
    assert out.read == len(out.kept) + len(out.rejected) > 0
    starts = {s["meta"]["start"] for s in out.kept}
    # the 6-hop simple paths: Asthma..Ondansetron, Wheezing..Nausea, both ways
    assert starts == {"Asthma", "Ondansetron", "Wheezing", "Nausea"}
    s = next(s for s in out.kept if s["meta"]["start"] == "Asthma")
    validate_sample(s)
    assert (s["family"], s["phase"], s["meta"]["answer"], s["meta"]["answer_kind"]) == ("kg_multihop", 2, "Ondansetron",
                                                                                         "fill")
    q = s["messages"][0]["content"]
    assert q.splitlines()[1] == "1. E1 (a chemical) is a treatment for Asthma."
    assert "2. E2 (a symptom) is a condition that E1 can cause." in q
    for hidden in ("Salbutamol", "Tremor", "Parkinson", "Levodopa", "Nausea", "Ondansetron"):
        assert hidden not in q
    rc = s["messages"][1]["reasoning_content"]
    assert rc.count("Evidence (doc-") == 6 and '"Here Nausea and Levodopa are linked (caused_by)."' in rc
    assert s["messages"][1]["content"] == "Ondansetron"
    rec = s["meta"]["chain"]
    assert rec["answer"] == "Ondansetron" and rec["question"] == q and rec["id"].startswith("kgchain-")
    assert [(h["head"], h["relation"], h["tail"], h["direction"]) for h in rec["hops"]][:2] == [
        ("Asthma", "treated_by", "Salbutamol", "forward"), ("Tremor", "caused_by", "Salbutamol", "backward")]
    assert all(h["sentence"] and h["doc_id"].startswith("doc-") for h in rec["hops"])
    assert {"kg-node:asthma", "kg-edge:5", "doc-5"} <= set(s["source_ids"])
    assert chain_records(out)[0]["id"] in {r["id"] for r in chain_records(out)}
    gates = out.by_gate()
    assert set(gates) <= {"weak", "walk", "answerable", "difficulty", "quality", "write"}
    assert gates["walk"].get("dead_end", 0) + gates["walk"].get("no_exit", 0) == len(out.rejected)
    assert st["walks_answerable"] == 4 and st["weak"] == out.read - gates.get("weak", {}).get("no_probe_question", 0)
    again, _ = run_multihop(Probe(atomic=0.0, multi=0.25), min_typed_degree=1)
    assert [x["id"] for x in again.kept] == [x["id"] for x in out.kept] and again.rejected == out.rejected


def test_multihop_weak_and_difficulty_gates():
    out, _ = run_multihop(Probe(atomic=1.0), min_typed_degree=1)
    assert not out.kept and out.by_gate()["weak"].get("not_weak", 0) > 0
    assert out.read == len(out.rejected)
    out, _ = run_multihop(Probe(atomic=0.0, multi=0.9), min_typed_degree=1)
    assert not out.kept and out.by_gate()["difficulty"] == {"too_easy": 4}
    out, _ = run_multihop(Probe(atomic=0.0, multi=0.1), min_typed_degree=1, difficulty_lo=0.2)
    assert out.by_gate()["difficulty"] == {"too_hard": 4}


def test_multihop_answerable_gate_rejects_an_ambiguous_chain():
    g = graph(extra=[(5, "treated_by", 11)])
    p = MultiHopParams(max_probe_entities=50, min_typed_degree=1, min_question_chars=20, clue_depth=0)
    out = multihop_qa(g, Probe(), p, seed=7)
    assert out.read == len(out.kept) + len(out.rejected)
    assert out.by_gate()["answerable"]["ambiguous"] >= 1
    assert all(s["meta"]["answer"] != "Ondansetron" for s in out.kept)


def test_local_quality_judge_checks():
    ok = Step("A treats B.", "A treats B here.", "d1")
    judge = LocalQualityJudge()
    items = [JudgeItem("Start from X. E1 (a disease) ...", "Zeta", "... so the answer is Zeta.", (ok,), ("Yota",)),
             JudgeItem("Start from X. E1 (a disease) ...", "Zeta", "... so the answer is Zeta.", (ok,), ()),
             JudgeItem("Start from Yota's cousin, E1 ...", "Zeta", "answer Zeta", (ok,), ("yota",)),
             JudgeItem("Start from X. E1 (a disease) is long", "Zeta", "answer Zeta", (Step("s", "", ""),)),
             JudgeItem("Start from W. E1 (a disease) is long", "Zeta", "no conclusion here", (ok,)),
             JudgeItem("Short", "Zeta", "Zeta", (ok,))]
    verdicts = judge.judge(items)
    assert [v[1] for v in verdicts] == ["", "duplicate", "name_leak", "missing_evidence", "answer_not_reached",
                                        "question_length"]
    assert verdicts[0][0] is True


def test_render_question_masks_and_chain_record_directions():
    g = graph()
    clues = [Clue(g.types[v], 0) for v in CHAIN[1:]]
    c = Chain(CHAIN, chain_arcs(g), clues, answer="Ondansetron")
    c.question = render_question(g, c)
    c.evidence = [g.evidence(a.edge) for a in c.arcs]
    assert c.question.splitlines()[-2] == "6. The answer (a chemical) is a treatment for Nausea.".replace(
        "Nausea", "E5")
    rec = chain_record(g, c)
    assert [h["edge_id"] for h in rec["hops"]] == [0, 1, 2, 3, 4, 5]
    assert [h["direction"] for h in rec["hops"]] == ["forward", "backward", "backward", "forward", "backward",
                                                     "forward"]


# ----------------------------------------------------------------------------- LLM roles (scripted endpoint)
def test_llm_roles_parse_repair_and_record_failures(tmp_path):
    def reply(messages):
        user = messages[1]["content"]
        if "Candidate next facts" in user:
            return 200, "the first one" if "starts at Parkinson" in user else '{"choice": 1}'
        if "Verified facts" in user:
            return 200, '{"reasoning": "Salbutamol treats asthma, so the answer is Salbutamol."}'
        if "Review this question" in user:
            return 200, '{"ok": false, "reason": "step 2 unsupported"}' if "Tremor" in user else '{"ok": true}'
        if "Candidate chains" in user:
            return 200, '{"keep": [2, 9, 1]}'
        return 200, "?"
    g = graph()
    with scripted(reply, tmp_path) as (client, requests):
        w = random_walks(g, [0, 3], LLMHopChooser(client), MultiHopParams(min_hops=2, max_hops=2), seed=0)
        step = Step("Asthma can be treated with Salbutamol.", "Here.", "doc-0")
        texts = LLMReasoningWriter(client).write([WriteRequest("Q?", "Salbutamol", ((step,),))])
        verdicts = LLMQualityJudge(client).judge([
            JudgeItem("Start from Asthma; what treats it?", "Salbutamol", "Salbutamol it is.", (step,)),
            JudgeItem("Start from Tremor; what causes it?", "Salbutamol", "Salbutamol it is.", (step,)),
            JudgeItem("Short", "Salbutamol", "Salbutamol", (step,))])
        paths = [KGPath((0, 1), tuple(chain_arcs(g, [0, 1]))), KGPath((0, 7), tuple(chain_arcs(g, [0, 7])))]
        ranked = LLMPathRanker(client).rank(g, ["What treats asthma?"], [paths], keep=3)
    # walk from Asthma: the LLM picks candidate 1 twice; for the walk from Parkinson it never answers JSON
    assert w[0].failure is None and len(w[0].arcs) == 2
    assert w[1].failure[0] == "llm_failed"
    assert texts == ["Salbutamol treats asthma, so the answer is Salbutamol."]
    assert [v[1] for v in verdicts] == ["", "llm_rejected", "question_length"]
    assert len([r for r in requests if "Review this question" in r["messages"][1]["content"]]) == 2
    local_order = LocalPathRanker().rank(g, [""], [paths], keep=2)[0]
    assert ranked == [[local_order[1], local_order[0]]]          # numbers refer to the Local order; 9 ignored


# ----------------------------------------------------------------------------- kg_paths
def test_find_paths_hand_computed():
    g = graph()
    p = KGPathsParams(max_path_len=3)
    [path] = find_paths(g, [0], [2], p)                          # Asthma -> Salbutamol -> Tremor
    assert path.nodes == (0, 1, 2) and [a.edge for a in path.arcs] == [0, 1]
    assert [a.forward for a in path.arcs] == [True, False] and path.arcs[1].node == 2
    assert find_paths(g, [0], [5], p) == []                      # 5 typed hops; the co-occurrence edge is no step
    [long] = find_paths(g, [0], [5], KGPathsParams(max_path_len=5))
    assert long.nodes == (0, 1, 2, 3, 4, 5)
    assert find_paths(g, [0], [2], KGPathsParams(max_node_degree=1)) == []      # Salbutamol (degree 2) is a hub here
    assert find_paths(g, [0], [0], p) == []
    assert siblings(find_paths(g, [8], [9], p)[0]) == 1                          # both treat Headache


def test_local_ranker_prefers_precise_specific_paths():
    g = TypedGraph(node_records(), edge_records(), precision={"medquad/treated_by": 0.9, "medquad/caused_by": 0.3})
    direct = KGPath((0, 1), tuple(chain_arcs(g, [0, 1])))
    weak = KGPath((2, 1), tuple(chain_arcs(g, [2, 1])))
    assert LocalPathRanker().rank(g, [""], [[weak, direct]], keep=1) == [[direct]]


def test_matcher_mapping_and_coverage():
    nodes = node_records() + [{"norm": "no", "name": "NO", "type": "Chemical", "tree_path": ["Chemical", "gas"]}]
    g = TypedGraph(nodes, edge_records(extra=[(0, "treated_by", 17)]))
    m = build_matcher(g, ["no"])
    assert entities(m, "No, asthma is not treated with NO; wheezing remains.", 5) == [0, 17, 7]
    assert coverage(m, "Parvovirus Fever") == pytest.approx(5 / 15)
    assert coverage(m, "Fever") == 1.0


def paths_items():
    return [
        {"id": "a", "question": "Which drug treats Parkinson disease?", "answer": "Levodopa", "answer_kind": "fill",
         "source": "t"},
        {"id": "b", "question": "What is this?", "answer": "Levodopa", "answer_kind": "fill", "source": "t"},
        {"id": "c", "question": "Is asthma treated with salbutamol?", "answer": "Yes", "answer_kind": "judgement",
         "source": "t"},
        {"id": "d", "question": "What treats asthma?", "answer": "Salbutamol inhaler spacer device",
         "answer_kind": "fill", "source": "t"},
        {"id": "e", "question": "What treats diabetes?", "answer": "Tremor", "answer_kind": "fill", "source": "t"},
        {"id": "f", "question": "Which drug can cause a tremor?", "answer": "Salbutamol", "answer_kind": "choice",
         "options": ["Aspirin", "Salbutamol", "Metformin"], "gold_index": 1, "source": "t",
         "images": [{"path": "data/x.png", "sha256": "0" * 64}]},
        {"id": "g", "question": "Which is NOT a treatment for headache?", "answer": "Metformin",
         "answer_kind": "choice", "options": ["Aspirin", "Metformin"], "gold_index": 1, "source": "t"},
        {"id": "h", "question": "What is on the image?", "answer": "Tremor", "answer_kind": "fill", "source": "t",
         "image_error": "x.jpg missing"},
        {"id": "i", "question": "What is the finding?", "answer": "Wheezing", "answer_kind": "fill", "source": "t",
         "context": "asthma"},
    ]


def test_kg_paths_gates_and_samples():
    g = graph()
    m = build_matcher(g)
    st = {}
    out = kg_paths(paths_items(), g, m, KGPathsParams(), seed=0, stats=st)
    assert out.read == 9 == len(out.kept) + len(out.rejected)
    got = {r["item"]["id"]: (r["gate"], r["reason"]) for r in out.rejected}
    assert got == {"b": ("mapping", "no_question_entity"), "c": ("mapping", "yes_no_answer"),
                   "d": ("mapping", "answer_not_covered"), "e": ("paths", "no_path"),
                   "g": ("quality", "negated_question"), "h": ("mapping", "missing_image")}
    kept = {s["meta"]["item_id"]: s for s in out.kept}
    assert set(kept) == {"a", "f", "i"}
    a = kept["a"]
    validate_sample(a)
    assert (a["family"], a["phase"], a["messages"][1]["content"]) == ("kg_paths", 1, "Levodopa")
    assert a["meta"]["paths"] == [[{"head": "Parkinson disease", "relation": "treated_by", "tail": "Levodopa",
                                    "direction": "forward", "sentence": "Here Parkinson disease and Levodopa are "
                                    "linked (treated_by).", "doc_id": "doc-3", "edge_id": 3}]]
    assert a["messages"][1]["reasoning_content"].endswith("Therefore, the answer is Levodopa.")
    f = kept["f"]
    assert f["messages"][1]["content"] == "B. Salbutamol" and f["kind"] == "image_text"
    assert f["messages"][0]["content"][0] == {"type": "image"} and "B. Salbutamol" in f["messages"][0]["content"][1]["text"]
    assert f["meta"]["answer_entities"] == ["Salbutamol"]
    assert kept["i"]["meta"]["paths"][0][0]["edge_id"] == 6        # Asthma has_symptom Wheezing, from the context
    again = kg_paths(paths_items(), g, m, KGPathsParams(), seed=0)
    assert [s["id"] for s in again.kept] == [s["id"] for s in out.kept]


# ----------------------------------------------------------------------------- real data (small samples)
def test_loaders_on_the_real_sources():
    vqa = SHARED / "benchmarks" / "vqa_rad" / "trainset.json"
    huatuo = SHARED / "rl" / "huatuo_o1_demo.json"
    if not vqa.exists() or not huatuo.exists():
        pytest.skip("shared benchmark data not present")
    items = load_vqa_rad(vqa, 5, seed=1, root=ROOT)
    assert len(items) == 5 and items == load_vqa_rad(vqa, 5, seed=1, root=ROOT)
    assert all(i["id"].startswith("vqa_rad-train-") and i["answer_kind"] in ("judgement", "fill") for i in items)
    for i in items:
        if i["images"]:
            assert (ROOT / i["images"][0]["path"]).is_file() and len(i["images"][0]["sha256"]) == 64
    h = load_huatuo(huatuo, 4, seed=1)
    assert len(h) == 4 and all(x["options"][x["gold_index"]] == x["answer"] for x in h)
    kept, samples = ROOT / "data" / "quality" / "kept", ROOT / "data" / "cpt_data" / "samples"
    if not kept.exists() or not samples.exists():
        pytest.skip("pipeline outputs not present")
    mq = load_medquad(kept, 3, seed=1)
    assert len(mq) == 3 and all(x["id"].startswith("medquad-") and x["answer"] and not x["answer"].startswith(
        x["question"]) for x in mq)
    aq = load_atomic_qa(samples, 3, seed=1)
    assert len(aq) == 3 and all(x["source_ids"] and x["question"].endswith("?") for x in aq)


@pytest.fixture(scope="module")
def real_graph():
    kg_dir = ROOT / "data" / "kg"
    if not (kg_dir / "graph.npz").exists():
        pytest.skip("data/kg not present")
    from tasks.knowledge_graph.graph import KnowledgeGraph
    return TypedGraph.from_kg(KnowledgeGraph.load(kg_dir), precision=load_edge_precision(kg_dir / "edge_precision.json"))


def test_multihop_on_the_real_kg_small(real_graph):
    g = real_graph
    assert not any(a.relation == "co_occurs_with" for row in g.adj for a in row)
    out = multihop_qa(g, Probe(), MultiHopParams(max_probe_entities=15), seed=1234)
    assert out.read == 15 == len(out.kept) + len(out.rejected) and out.kept
    for s in out.kept:
        validate_sample(s)
        rec = s["meta"]["chain"]
        assert len(rec["hops"]) >= 6 and all(h["sentence"] and h["doc_id"] for h in rec["hops"])
        # independent re-check of uniqueness over the raw edge records
        start = g.nodes.index(next(n for n in g.nodes if f"kg-node:{n['norm']}" == s["source_ids"][0]))
        frontier = {start}
        for h, level in zip(rec["hops"], s["meta"]["clue_levels"]):
            e = g.edges[h["edge_id"]]
            want = e["tail_idx"] if h["direction"] == "forward" else e["head_idx"]
            nxt = set()
            for u in frontier:
                for a in g.adj[u]:
                    if a.relation == h["relation"] and (a.forward == (h["direction"] == "forward") or not a.directed) \
                            and g.types[a.node] == g.types[want] \
                            and (not level or g.paths[a.node][level:level + 1] == [g.paths[want][level]]):
                        nxt.add(a.node)
            frontier = nxt
        assert frontier == {want}


def test_kg_paths_on_real_huatuo_items_small(real_graph):
    huatuo = SHARED / "rl" / "huatuo_o1_demo.json"
    if not huatuo.exists():
        pytest.skip("shared data not present")
    p = KGPathsParams()
    items = load_huatuo(huatuo, 30, seed=1)
    out = kg_paths(items, real_graph, build_matcher(real_graph, ["no", "all"] + p.extra_stop_keys), p, seed=1)
    assert out.read == 30 == len(out.kept) + len(out.rejected)
    assert set(out.by_gate()) <= {"mapping", "paths", "quality", "write"}
    for s in out.kept:
        validate_sample(s)
        assert s["messages"][1]["content"][:2] in {f"{c}." for c in "ABCDE"}
        assert all(h["sentence"] for path in s["meta"]["paths"] for h in path)
