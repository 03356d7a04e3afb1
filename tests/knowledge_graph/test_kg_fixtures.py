"""Shared fixtures for the kg tests: a small valid tree (tier 1 = entity types), a few PubTator /
MedQuAD / other records, and their doc_hits written the way entity_map writes them (the same
EntityMatcher over the same tree).

With seed 1234 and the default heldout.cid_fraction 0.2, pt-1 gives cid edges and pt-3 is held out
(its CID relations are the gold of the edge-precision tests; test_kg_precision checks both draws)."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.mapping.automaton import EntityMatcher, tree_entries
from tasks.tree.model import Node, Tree

CATEGORIES = [("c1", "Disease", "c"), ("c1.1", "respiratory", "c1"), ("c1.2", "cardiovascular", "c1"),
              ("c2", "Chemical", "c"), ("c3", "Symptom", "c"), ("c4", "Test", "c"), ("c5", "Anatomy", "c")]
ENTITIES = {  # norm -> (category id, surface name, frequency)
    "asthma": ("c1.1", "Asthma", 9), "acute lymphoblastic leukemia": ("c1", "acute lymphoblastic leukemia", 4),
    "hypertension": ("c1.2", "hypertension", 8), "seizures": ("c1", "seizures", 3),
    "tricuspid regurgitation": ("c1.2", "tricuspid regurgitation", 2),
    "cocaine": ("c2", "cocaine", 5), "lithium carbonate": ("c2", "lithium carbonate", 2),
    "albuterol": ("c2", "albuterol", 6), "aspirin": ("c2", "Aspirin", 4), "vincristine": ("c2", "vincristine", 2),
    "wheezing": ("c3", "wheezing", 5), "cough": ("c3", "cough", 7), "shortness of breath": ("c3", "shortness of breath", 3),
    "fever": ("c3", "fever", 6), "spirometry": ("c4", "spirometry", 2), "headache": ("c3", "headache", 1),
    "htn": ("c1.2", "HTN", 1), "lung": ("c5", "lung", 2), "chest": ("c5", "chest", 2),
}


def kg_tree() -> Tree:
    t = Tree([Node("c", "Medical Entity Tree", None, 0)])
    for cid, name, parent in CATEGORIES:
        t.add(Node(cid, name, parent, t.nodes[parent].tier + 1))
    for norm, (cat, name, freq) in ENTITIES.items():
        t.add(Node(f"e:{norm}", name, cat, t.nodes[cat].tier + 1, "entity", [norm], freq, True))
    t.refresh()
    t.params = {"build": {"type_tier": True}}
    return t


def rec(rid, source, text, **meta):
    return {"id": rid, "source": source, "text": text, "images": [], "meta": meta}


def _mention(text, surface, mesh, etype):
    start = text.index(surface)
    return {"start": start, "end": start + len(surface), "id": mesh, "text": surface, "type": etype}


PT_TEXT = ("Cocaine-induced hypertension in a young man. Tricuspid regurgitation and lithium carbonate toxicity "
           "in a newborn. Breast and ovarian cancer were reported. Seizures in patients treated with cocaine.")
PUBTATOR = rec("pt-1", "pubtator", PT_TEXT, mentions=[
    _mention(PT_TEXT, "Cocaine", "D003042", "Chemical"), _mention(PT_TEXT, "hypertension", "D006973", "Disease"),
    _mention(PT_TEXT, "Tricuspid regurgitation", "D014262", "Disease"),
    _mention(PT_TEXT, "lithium carbonate", "D016651", "Chemical"), _mention(PT_TEXT, "toxicity", "D064420", "Disease"),
    _mention(PT_TEXT, "Breast and ovarian cancer", "D001943|D010051", "Disease"),
    _mention(PT_TEXT, "Seizures", "D012640", "Disease")],
    relations=[{"chemical": "D003042", "disease": "D006973", "type": "CID"},     # kept
               {"chemical": "D016651", "disease": "D014262", "type": "CID"},     # kept (no shared sentence)
               {"chemical": "D016651", "disease": "D064420", "type": "CID"},     # toxicity: not in tree
               {"chemical": "D003042", "disease": "D010051", "type": "CID"},     # composite mention only
               {"chemical": "D999999", "disease": "D012640", "type": "CID"},     # chemical never mentioned
               {"chemical": "D003042", "disease": "D012640", "type": "CID"},     # kept
               {"chemical": 7, "disease": None}])                               # malformed

# Held out (seed 1234): its relations are gold, never edges. Pattern caused_by found here: seizures <-
# lithium carbonate (gold), headache <- aspirin (gold), hypertension <- vincristine (not gold); gold
# hypertension <- cocaine is missed. Co-occurring condition/chemical pairs: the 3 gold + 2 others.
PT3_TEXT = ("Lithium carbonate-induced seizures were reported. Aspirin caused headache in one patient. "
            "Albuterol and hypertension were unrelated. Vincristine-induced hypertension was not seen. "
            "Cocaine use and hypertension were common.")
PUBTATOR_HELDOUT = rec("pt-3", "pubtator", PT3_TEXT, mentions=[
    _mention(PT3_TEXT, "Lithium carbonate", "D016651", "Chemical"), _mention(PT3_TEXT, "seizures", "D012640", "Disease"),
    _mention(PT3_TEXT, "Aspirin", "D001241", "Chemical"), _mention(PT3_TEXT, "headache", "D006261", "Disease"),
    _mention(PT3_TEXT, "Albuterol", "D000420", "Chemical"), _mention(PT3_TEXT, "hypertension", "D006973", "Disease"),
    _mention(PT3_TEXT, "Vincristine", "D014750", "Chemical"), _mention(PT3_TEXT, "Cocaine", "D003042", "Chemical")],
    relations=[{"chemical": "D016651", "disease": "D012640", "type": "CID"},
               {"chemical": "D001241", "disease": "D006261", "type": "CID"},
               {"chemical": "D003042", "disease": "D006973", "type": "CID"},
               {"chemical": "D999999", "disease": "D006973", "type": "CID"}])    # chemical never mentioned

Q1 = "What are the symptoms of Asthma ?"
Q2 = "What are the treatments for Adult Acute Lymphoblastic Leukemia ?"
Q3 = "What is (are) Asthma ?"
Q6 = "What are the treatments for Hypertension ?"
MEDQUAD = [
    rec("mq-1", "medquad", Q1 + "\n\nSymptoms of asthma include wheezing, cough and shortness of breath. "
        "A fever is unusual.", focus="Asthma", qtype="symptoms", question=Q1),
    rec("mq-2", "medquad", Q2 + "\n\nVincristine is used for the treatment of acute lymphoblastic leukemia. "
        "Fever may occur.", focus="Adult Acute Lymphoblastic Leukemia", qtype="treatment", question=Q2),
    rec("mq-3", "medquad", Q3 + "\n\nAsthma is a disease of the airways with cough.", focus="Asthma",
        qtype="information", question=Q3),
    rec("mq-4", "medquad", "What causes Unicorn Flu ?\n\nCough and fever.", focus="Unicorn Flu", qtype="causes",
        question="What causes Unicorn Flu ?"),
    rec("mq-5", "medquad", "What are the symptoms of Asthma ?\n\nNo entity here.", focus="Asthma",
        qtype="symptoms", question=Q1),
    # hypertension treated_by aspirin / lithium carbonate are kept; treated_by asthma (Disease -> Disease)
    # breaks the signature and is rejected
    rec("mq-6", "medquad", Q6 + "\n\nAspirin and lithium carbonate may help. Patients with asthma need care.",
        focus="Hypertension", qtype="treatment", question=Q6),
]
OTHER = [
    rec("ab-1", "medline", "Albuterol is used for the treatment of asthma. Asthma and albuterol again. "
        "Patients with asthma received albuterol. Spirometry is used for the diagnosis of asthma."),
    rec("ab-2", "medline", "Asthma improved with albuterol. Headache was rare. Cough was common."),
    rec("ab-3", "medline", "Hypertension caused by cocaine is well known. Asthma, cough, fever, wheezing, "
        "headache, seizures, aspirin and albuterol were listed."),
    rec("img-1", "vqa_rad", ""),
    # located_in patterns: wheezing -> chest and asthma -> lung kept; hypertension -> asthma rejected
    rec("ab-4", "medline", "Wheezing in the chest is typical of asthma. Hypertension in asthma is rare. "
        "Asthma of the lung."),
]
RECORDS = [PUBTATOR, PUBTATOR_HELDOUT, *MEDQUAD, *OTHER]
BAD_LINES = ["{not json", json.dumps({"id": "x", "source": "test"})]


def write_inputs(root: Path, tree: Tree | None = None, records: list[dict] | None = None,
                 bad_lines: list[str] | None = None) -> dict[str, Path]:
    """tree.json, kept/part-00000.jsonl and doc_hits/part-00000.jsonl under `root`."""
    tree = tree or kg_tree()
    records = RECORDS if records is None else records
    root.mkdir(parents=True, exist_ok=True)
    tree_path = root / "tree.json"
    tree_path.write_text(json.dumps(tree.to_json()), encoding="utf-8")
    kept = root / "kept"
    hits_dir = root / "doc_hits"
    kept.mkdir()
    hits_dir.mkdir()
    matcher = EntityMatcher(tree_entries(tree))
    with open(kept / "part-00000.jsonl", "w", encoding="utf-8") as f, \
            open(hits_dir / "part-00000.jsonl", "w", encoding="utf-8") as h:
        for r in records:
            f.write(json.dumps(r) + "\n")
            hits = [{"norm": p[0], "node": p[1], "start": s, "end": e} for s, e, p in matcher.scan(r["text"])]
            h.write(json.dumps({"doc_id": r["id"], "source": r["source"], "hits": hits}) + "\n")
        f.writelines(line + "\n" for line in (BAD_LINES if bad_lines is None else bad_lines))
    return {"tree": tree_path, "in_dir": kept, "doc_hits_dir": hits_dir}


def stage_args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [f"tree={paths['tree']}", f"in_dir={paths['in_dir']}", f"doc_hits_dir={paths['doc_hits_dir']}",
            f"out_dir={out}", "seed=1234", "cooccurrence.min_count=2", "cooccurrence.min_npmi=0.05", *extra]


def run_stage(paths: dict[str, Path], out: Path, *extra: str) -> dict:
    """The whole stage: config from params.yaml (no kg section needed) + overrides, MLflow, atomic dir."""
    from tasks import kg
    from tasks.common.stage import main
    return main(kg.STAGE, stage_args(paths, out, *extra))


def run_stage_once(tmp: Path, *extra: str) -> tuple[dict[str, Path], Path, dict]:
    """(inputs, output dir, summary) of one stage run on the default fixtures, in its own MLflow store
    (for module-scoped fixtures, which the per-test MLflow isolation of tests/conftest.py does not cover)."""
    import pytest
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setenv("MEDX_MLFLOW_ARTIFACTS", (tmp / "artifacts").as_uri())
        mp.delenv("MEDX_MLFLOW_PARENT_RUN_ID", raising=False)
        paths = write_inputs(tmp / "in")
        return paths, tmp / "kg", run_stage(paths, tmp / "kg", *extra)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
