"""`python -m tasks.entity_tree` end to end on an entities table built from the gold PubTator
mentions (plus bad rows), tiny params, the real MiniLM loaded offline, MLflow into a temp store."""

from __future__ import annotations

import json
import re

import pytest

from tasks.common.io import ShardedJsonlWriter
from tasks.tree.embed import load_encoder
from tasks.tree.gold import TRAIN_FILES, write_entities_dir
from tasks.tree.model import ENTITY, load_tree

BAD_ROWS = [{"norm": "", "text": "", "type": "Disease", "count": 9, "doc_count": 1},
            {"norm": "  \t ", "text": " ", "type": "Chemical", "count": 9, "doc_count": 1},
            {"norm": "y" * 10_000, "text": "y" * 10_000, "type": "Disease", "count": 9, "doc_count": 1}]


@pytest.fixture(scope="session")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("entities")
    pub = data_root / "corpus" / "pubtator"
    stats = write_entities_dir(root / "entities", [pub / f for f in TRAIN_FILES], max_docs=40)
    with open(root / "entities" / "entities.jsonl", "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in BAD_ROWS)
        f.write("{not json\n")
    # evidence corpus: the same abstracts as kept records (what data/quality/kept holds)
    w = ShardedJsonlWriter(root / "kept")
    for name in TRAIN_FILES:
        for line in (pub / name).read_text(encoding="utf-8").splitlines()[:1500]:
            m = re.match(r"^(\d+)\|a\|(.*)$", line)
            if m:
                w.write({"id": f"pubtator-{m.group(1)}", "source": "pubtator", "text": m.group(2),
                         "images": [], "meta": {}})
    w.close()
    return root, stats


def run_stage(root, out, *extra):
    from tasks import entity_tree
    from tasks.common.stage import main
    return main(entity_tree.STAGE, ["profile=tiny", f"in_dir={root / 'entities'}", f"out_dir={out}",
                       f"evidence_corpus={root / 'kept'}", "build.core_top_n=60", "attach.batch_size=50",
                       *extra])


def test_stage_end_to_end(fixture_dirs, tmp_path, encoder):
    root, stats = fixture_dirs
    out = tmp_path / "entity_tree"
    summary = run_stage(root, out)
    read = stats["entities"] + len(BAD_ROWS) + 1
    assert summary["read"] == read == summary["kept"] + summary["rejected"]
    assert summary["rejected_by_reason"]["empty_entity"] == 2
    assert summary["rejected_by_reason"]["entity_too_long"] == 1
    assert summary["rejected_by_reason"]["bad_json"] == 1
    assert summary["core_size"] == 60 and summary["attached"] > 0 and summary["tiers"] <= 5
    assert summary["conflicts"] > 0 and summary["unclassified"] > 0
    assert summary["levels"] and all(lv["chosen_k"] in map(int, lv["silhouette"]) for lv in summary["levels"])

    tree = load_tree(out / "tree.json")                  # the validator entity_map uses
    norms = [n.members[0] for n in tree.nodes.values() if n.kind == ENTITY]
    assert len(norms) == len(set(norms)) == summary["entities_in_tree"]
    # entities per type: each entity counted under the tier-1 type node it sits below
    tier1 = {n.id: n.name for n in tree.nodes.values() if n.tier == 1}
    want: dict[str, int] = {}
    for n in tree.nodes.values():
        if n.kind == ENTITY:
            top = tier1[tree.ancestors(n.id)[1]]
            want[top] = want.get(top, 0) + 1
    assert summary["entities_by_type"] == want and sum(want.values()) == len(norms)
    attached = [json.loads(line) for line in open(out / "attachments.jsonl")]
    unclassified = [json.loads(line) for line in open(out / "unclassified.jsonl")]
    audits = [json.loads(line) for line in open(out / "conflicts_audit.jsonl")]
    assert {a["entity"] for a in attached} <= set(norms)
    assert all(not tree.nodes[f"e:{a['entity']}"].core for a in attached)
    assert not {u["entity"] for u in unclassified} & set(norms)
    assert sum(u["rows"] for u in unclassified) == summary["rejected"]
    assert len(audits) == summary["conflicts"]
    for a in audits:
        assert {"entity", "candidates", "decision", "reasoning", "evidence", "path"} <= set(a)
        assert a["path"] == "local" and len(a["candidates"]) >= 2
        kept = [x for x in attached if x["entity"] == a["entity"]][0]
        assert kept["path"] == a["decision"]["keep"]
    assert (out / "tree_top.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text()) == summary

    import mlflow
    client = mlflow.MlflowClient()
    run = client.search_runs([mlflow.get_experiment_by_name("medxiaohe-pipeline").experiment_id])[0]
    m = run.data.metrics
    assert m["core_size"] == 60 and m["tiers"] == summary["tiers"] and m["conflicts"] == summary["conflicts"]
    assert any(k.startswith("k.Disease.L") for k in m) and any(k.startswith("silhouette.") for k in m)
    assert {k: v for k, v in m.items() if k.startswith("entities.type.")} == \
        {f"entities.type.{t}": c for t, c in summary["entities_by_type"].items()}
    assert run.data.tags["stage"] == "entity_tree" and run.data.params["attacher"] == "local"
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "entity_tree")}
    assert {"entity_tree/tree.json", "entity_tree/conflicts_audit.jsonl", "entity_tree/tree_top.png"} <= arts

    # a re-run gives byte-identical outputs (seeded embeddings, K-Means, silhouette; sorted JSON)
    out2 = tmp_path / "again"
    run_stage(root, out2)
    for name in ("tree.json", "attachments.jsonl", "unclassified.jsonl", "conflicts_audit.jsonl",
                 "summary.json"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_stage_fails_loudly_on_missing_inputs(fixture_dirs, tmp_path):
    root, _ = fixture_dirs
    with pytest.raises(FileNotFoundError, match="run the entities stage first"):
        run_stage(root, tmp_path / "o", f"in_dir={tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match="evidence_corpus"):
        run_stage(root, tmp_path / "o", f"evidence_corpus={tmp_path / 'nope'}")
    assert not (tmp_path / "o").exists()              # atomic: nothing half-written
