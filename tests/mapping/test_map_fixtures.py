"""Shared fixtures for the entity_map tests: a tiny valid tree and a few corpus records."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.tree.model import Node, Tree

ENTITIES = {  # norm -> (category id, surface name)
    "breast cancer": ("c1.1", "Breast Cancer"),
    "lung cancer": ("c1.1", "lung cancer"),
    "all": ("c1", "ALL"),
    "cisplatin": ("c2", "cisplatin"),
    "t cell": ("c3", "T cell"),
}


def tiny_tree() -> Tree:
    t = Tree([Node("c", "Medical Entity Tree", None, 0), Node("c1", "Disease", "c", 1),
              Node("c1.1", "cancers", "c1", 2), Node("c2", "Chemical", "c", 1),
              Node("c3", "Cell", "c", 1), Node("c4", "Empty domain", "c", 1)])
    for norm, (cat, name) in ENTITIES.items():
        t.add(Node(f"e:{norm}", name, cat, t.nodes[cat].tier + 1, "entity", [norm], 1, True))
    t.refresh()
    return t


def write_tree(path: Path, obj: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj if obj is not None else tiny_tree().to_json()), encoding="utf-8")
    return path


RECORDS = [
    ("doc-1", "Breast cancer and lung cancer patients were given cisplatin."),
    ("doc-2", "Breast cancer is common. BREAST CANCER screening."),
    ("doc-3", "Children with ALL are treated; smaller doses of cisplatin."),
    ("doc-4", "Nothing medical here at all, smaller things only."),     # "all" is a hit (word)
    ("doc-5", "No entity whatsoever in this smaller text."),
    ("doc-6", ""),                                                   # image-only record
    ("doc-7", "Heart t-cell response; breast cancer."),
]


def write_corpus(d: Path, bad_line: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "part-00000.jsonl", "w", encoding="utf-8") as f:
        for i, text in RECORDS:
            f.write(json.dumps({"id": i, "source": "test", "text": text, "images": [], "meta": {}}) + "\n")
        if bad_line:
            f.write("{not json\n")
            f.write(json.dumps({"id": "x", "source": "test"}) + "\n")   # missing fields
    return d
