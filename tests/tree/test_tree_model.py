"""tree.json loader/validator (the contract entity_map reads): good trees load, bad ones fail with
every problem named."""

from __future__ import annotations

import copy
import json

import pytest

from tasks.tree.model import TreeError, load_tree, validate_tree


def node(id, name, parent, tier, kind="category", members=None, frequency=1, core=True):
    return {"id": id, "name": name, "parent": parent, "tier": tier, "kind": kind,
            "members": members or [], "frequency": frequency, "core": core}


def good() -> dict:
    return {"nodes": [
        node("c", "Medical Entity Tree", None, 0, frequency=7),
        node("c1", "Disease", "c", 1, frequency=7),
        node("c1.1", "heart disease", "c1", 2, members=["angina", "myocardial infarction"], frequency=5),
        node("c1.2", "cancer", "c1", 2, members=["breast cancer"], frequency=2),
        node("e:myocardial infarction", "myocardial infarction", "c1.1", 3, "entity",
             ["myocardial infarction"], 4),
        node("e:angina", "angina", "c1.1", 3, "entity", ["angina"], 1, False),
        node("e:breast cancer", "breast cancer", "c1.2", 3, "entity", ["breast cancer"], 2),
    ], "params": {"seed": 1}}


def test_valid_tree_round_trips(tmp_path):
    p = tmp_path / "tree.json"
    p.write_text(json.dumps(good()))
    tree = load_tree(p)
    assert tree.root.id == "c" and tree.tiers() == {0: 1, 1: 1, 2: 2, 3: 3}
    assert tree.path("e:angina") == "Disease.heart disease.angina"
    assert tree.resolve_names(["Disease", "Heart  Disease"]) == "c1.1"
    assert tree.resolve_names(["Medical Entity Tree", "Disease", "cancer"]) == "c1.2"
    assert tree.resolve_names(["Disease", "lung disease"]) is None
    assert tree.entity_index()["angina"] == "e:angina"
    tree.refresh()
    assert validate_tree(tree.to_json()).fingerprint() == tree.fingerprint()


def _errors(obj) -> str:
    with pytest.raises(TreeError) as e:
        validate_tree(obj)
    return str(e.value)


def test_cycle_is_detected():
    t = good()
    t["nodes"][1]["parent"] = "c1.1"       # Disease -> heart disease -> Disease
    msg = _errors(t)
    assert "cycle in parent links" in msg and "c1" in msg and "c1.1" in msg


def test_self_parent_and_missing_parent_and_duplicates():
    t = good()
    t["nodes"][3]["parent"] = "nope"
    assert "parent 'nope' does not exist" in _errors(t)
    t = good()
    t["nodes"].append(copy.deepcopy(t["nodes"][2]))
    assert "duplicate node id 'c1.1'" in _errors(t)
    t = good()
    t["nodes"][2]["parent"] = "c1.1"
    msg = _errors(t)
    assert "its own parent" in msg or "cycle" in msg


def test_more_than_five_tiers_is_rejected():
    t = good()
    parent = "c1.2"
    for tier in range(3, 6):                # c1.2 (tier 2) -> tiers 3, 4, 5
        t["nodes"].append(node(f"x{tier}", f"deep {tier}", parent, tier))
        parent = f"x{tier}"
    msg = _errors(t)
    assert "node 'x5' is at tier 5: more than 5 tiers" in msg


def test_inconsistent_tiers_members_names_and_duplicate_entities():
    t = good()
    t["nodes"][4]["tier"] = 4
    assert "tier 4 but parent 'c1.1' has tier 2" in _errors(t)
    t = good()
    t["nodes"][2]["members"] = ["angina"]
    assert "!= its entity children's norms" in _errors(t)
    t = good()
    t["nodes"][6]["members"] = ["angina"]      # second entity node for "angina"
    t["nodes"][3]["members"] = ["angina"]
    assert "entity 'angina' appears more than once" in _errors(t)
    t = good()
    t["nodes"][3]["name"] = "Heart disease"
    assert "share the name" in _errors(t)
    t = good()
    t["nodes"][3]["name"] = "ca. cancer"
    assert "contains '.'" in _errors(t)
    t = good()
    t["nodes"].append(node("e:x", "x", "e:angina", 4, "entity", ["x"]))
    assert "is an entity (entities are leaves)" in _errors(t)


def test_shape_and_type_errors():
    assert "'nodes' list" in _errors({"nodes": {}})
    assert "'nodes' list" in _errors([])
    t = good()
    t["nodes"][1]["tier"] = True
    del t["nodes"][2]["core"]
    t["nodes"][3]["kind"] = "leaf"
    t["nodes"].append("oops")
    msg = _errors(t)
    assert "field 'tier' has type bool" in msg and "missing field 'core'" in msg
    assert "nodes[7]: not an object" in msg
    t = good()
    t["nodes"].append(node("r2", "another root", None, 0))
    assert "exactly one root" in _errors(t)


def test_load_tree_reports_bad_json(tmp_path):
    p = tmp_path / "tree.json"
    p.write_text('{"nodes": [')
    with pytest.raises(TreeError, match="not valid JSON"):
        load_tree(p)
    p.write_bytes(b'{"nodes": ["\xff"]}')
    with pytest.raises(TreeError, match="UTF-8"):
        load_tree(p)
