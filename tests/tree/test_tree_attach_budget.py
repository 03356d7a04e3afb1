"""The LLM attacher's prompt budget (tasks/tree/attach.py `LLMAttacher.core_view`): when the frozen
core's paths exceed `tree_max_chars`, each entity sees its type branch first, then the categories
nearest to its embedding, and the cut is recorded per decision and in the stats -- never silent."""

from __future__ import annotations

import numpy as np
from scripted_endpoint import scripted

from tasks.tree.attach import NOTE_RESERVE, LLMAttacher, attach_all
from tasks.tree.build import FrozenCore
from tasks.tree.conflicts import EvidenceIndex, LocalResolver
from tasks.tree.embed import Entity
from tasks.tree.model import ENTITY, Node, Tree

CATEGORIES = [("c1", "Disease", "c"), ("c1.1", "neurological disorders of the central nervous system", "c1"),
              ("c1.2", "digestive system disorders", "c1"), ("c1.3", "pain syndromes", "c1"),
              ("c1.4", "cardiovascular diseases of the heart and vessels", "c1"),
              ("c1.5", "infectious diseases caused by bacteria and viruses", "c1"),
              ("c2", "Chemical", "c"), ("c2.1", "analgesics", "c2"), ("c2.2", "antibiotics", "c2")]
IDS = ("c", *(i for i, _, _ in CATEGORIES))


def frozen_core() -> FrozenCore:
    t = Tree([Node("c", "Medical Entity Tree", None, 0)])
    for nid, name, parent in CATEGORIES:
        t.add(Node(nid, name, parent, t.nodes[parent].tier + 1))
    for nid, _, _ in CATEGORIES:
        if "." in nid:
            t.add(Node(f"e:x{nid}", f"x{nid}", nid, 3, ENTITY, [f"x{nid}"], 3, True))
    t.refresh()
    m = np.eye(len(IDS), dtype=np.float32)          # one axis per category: cosine = the entity's weight
    m.setflags(write=False)
    return FrozenCore(t, IDS, m, {i: j for j, i in enumerate(IDS)}, {"Disease": "c1", "Chemical": "c2"},
                      t.fingerprint())


def vec(**weights) -> np.ndarray:
    v = np.zeros(len(IDS), np.float32)
    for nid, w in weights.items():
        v[IDS.index(nid.replace("_", "."))] = w
    return v


def ent(text: str, typ: str) -> Entity:
    return Entity(text.lower(), text, typ, 1, 1, [{"text": text, "type": typ, "count": 1}])


def path(core, nid):
    return core.tree.path(nid)


def budget_for(core, *nids) -> int:
    """A budget that holds exactly these paths (and the note), not one more."""
    return NOTE_RESERVE + sum(len(path(core, n)) + 1 for n in nids)


def test_everything_fits_nothing_cut():
    core = frozen_core()
    view = LLMAttacher(None, core, tree_max_chars=0).core_view(ent("Aspirin", "Chemical"), vec(c2_1=1))
    assert view.text.splitlines() == [path(core, n) for n in IDS[1:]] and not view.truncated
    assert view.n_shown == view.n_available == 9 and view.branch_complete


def test_cut_core_shows_the_type_branch_then_the_nearest_categories():
    core = frozen_core()
    limit = budget_for(core, "c2", "c2.1", "c2.2", "c1.3")
    att = LLMAttacher(None, core, tree_max_chars=limit)
    view = att.core_view(ent("Aspirin", "Chemical"), vec(c1_3=0.8, c2_1=0.5, c1_1=0.1))
    lines = view.text.splitlines()
    # tree order; c1.3 (cosine 0.8) beats c1.1 (0.1); "Disease" would fit by length but no longer by budget
    assert lines[:-1] == ["Disease.pain syndromes", "Chemical", "Chemical.analgesics", "Chemical.antibiotics"]
    assert lines[-1] == "... (4 of 9 category paths shown: this noun's type branch and those nearest to this noun)"
    assert len(view.text) <= limit and view.truncated and view.branch_complete
    assert view.shown == {"c1", "c1.3", "c2", "c2.1", "c2.2"}        # a shown path names its ancestors too
    # no embedding: the type branch, then the rest in tree order
    plain = att.core_view(ent("Aspirin", "Chemical")).text.splitlines()
    assert plain[:-1] == ["Disease", "Chemical", "Chemical.analgesics", "Chemical.antibiotics"]
    assert plain[-1].endswith("shown: this noun's type branch)")
    # a type branch longer than the budget: its categories by cosine
    cut = att.core_view(ent("Stroke", "Disease"), vec(c1_3=0.9, c1_2=0.6))
    assert not cut.branch_complete and "c1.4" not in cut.shown and "c1.3" in cut.shown


def attach_reply(messages):
    entity = messages[1]["content"].rsplit("\n", 1)[-1]
    return 200, {
        "Aspirin": "<Reason>pain relief</Reason><InsertionPath>Chemical.analgesics.Aspirin</InsertionPath>",
        # a real core path the prompt did not show: accepted, and counted as such
        "Angina": "<Reason>heart</Reason><InsertionPath>Disease.cardiovascular diseases of the heart and "
                  "vessels.Angina</InsertionPath>",
        "Lost": "<Reason>unsure</Reason><Reasoning>none of the listed categories fits</Reasoning>",
    }[entity]


def test_truncated_prompts_are_recorded_per_entity_and_in_the_stats(tmp_path):
    core = frozen_core()
    limit = budget_for(core, "c1", "c1.1", "c1.2", "c1.3")
    entities = [ent("Aspirin", "Chemical"), ent("Angina", "Disease"), ent("Lost", "Disease")]
    x = np.stack([vec(c2_1=0.9), vec(c1_1=0.9, c1_2=0.5, c1_3=0.4, c1_4=0.3), vec(c1_2=0.7)])
    working = core.tree.copy()
    with scripted(attach_reply, tmp_path) as (client, requests):
        att = LLMAttacher(client, core, tree_max_chars=limit)
        res = attach_all(entities, x, core, working, att, LocalResolver(core.tree, EvidenceIndex([])),
                         batch_size=3, max_tiers=5)
    prompts = {r["messages"][1]["content"].rsplit("\n", 1)[-1]: r["messages"][1]["content"] for r in requests}
    assert len(att.full_text) > limit
    assert "Disease.cardiovascular diseases of the heart and vessels\n" not in prompts["Angina"]
    assert "4 of 9 category paths shown" in prompts["Angina"]
    placed = {a["text"]: a for a in res.attachments}
    assert placed["Aspirin"]["path"] == "Chemical.analgesics" and placed["Aspirin"]["parent_shown"] is True
    assert placed["Angina"]["node_id"] == "c1.4" and placed["Angina"]["parent_shown"] is False
    assert (placed["Angina"]["core_paths_shown"], placed["Angina"]["core_paths_available"]) == (4, 9)
    (lost,) = res.unclassified
    assert lost["reason"] == "llm_unclassifiable" and (lost["core_paths_shown"], lost["core_paths_available"]) == (4, 9)
    s = att.stats
    assert s["prompts_truncated"] == 3 and s["core_paths_available"] == 9
    assert s["type_branch_cut"] == 2                      # both Disease entities; Chemical's branch fit
    assert s["answer_not_shown"] == 1 and s["unclassified_after_truncation"] == 1
    assert s["core_paths_shown_mean"] == 4.33             # Aspirin 5 (its branch + Disease, ...neurological), 4, 4
