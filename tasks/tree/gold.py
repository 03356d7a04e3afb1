"""An `entities`-stage-shaped table from the gold PubTator mentions (BC5CDR, NCBI-disease).

Used as the entity_tree test fixture and to run the stage on real entities before (or without) the
`entities` stage: it writes the same contract,

    <out>/entities.jsonl          {"norm", "text", "type", "count", "doc_count"} sorted by (-count, norm)
    <out>/mentions/part-00000.jsonl   {"doc_id", "source", "entities": [{"text","norm","type","start","end"}]}

from gold spans only (never from the reference vocabularies). norm = NFKC, casefolded, whitespace
collapsed; NCBI-disease's mention classes (SpecificDisease, DiseaseClass, Modifier, CompositeMention)
map to "Disease"; per norm the most frequent surface form and type win (ties: alphabetical).

Run:  python -m tasks.tree.gold OUT_DIR FILE [FILE ...] [--max-docs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

from tasks.common.io import ShardedJsonlWriter, dumps

TYPE_MAP = {"SpecificDisease": "Disease", "DiseaseClass": "Disease", "Modifier": "Disease",
            "CompositeMention": "Disease"}
TRAIN_FILES = ("CDR_TrainingSet.PubTator.txt", "NCBItrainset_corpus.txt")


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def read_mentions(path: Path, max_docs: int = 0) -> list[dict]:
    """Mention documents of one PubTator file, in file order."""
    docs: list[dict] = []
    current: dict | None = None
    corpus = "bc5cdr" if path.name.startswith("CDR") else "ncbi_disease"
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                current = None
                continue
            if "|t|" in line[:20] and line.split("|", 1)[0].isdigit():
                if max_docs and len(docs) >= max_docs:
                    break
                pmid = line.split("|", 1)[0]
                current = {"doc_id": f"{corpus}:{pmid}", "source": "pubtator", "entities": []}
                docs.append(current)
                continue
            cols = line.split("\t")
            if current is not None and len(cols) >= 6 and cols[1].isdigit():
                current["entities"].append({"text": cols[3], "norm": normalize(cols[3]),
                                            "type": TYPE_MAP.get(cols[4], cols[4]),
                                            "start": int(cols[1]), "end": int(cols[2])})
    return docs


def entity_table(docs: list[dict]) -> list[dict]:
    count: Counter = Counter()
    docs_of: dict[str, set] = defaultdict(set)
    texts: dict[str, Counter] = defaultdict(Counter)
    types: dict[str, Counter] = defaultdict(Counter)
    for d in docs:
        for m in d["entities"]:
            n = m["norm"]
            if not n:
                continue
            count[n] += 1
            docs_of[n].add(d["doc_id"])
            texts[n][m["text"]] += 1
            types[n][m["type"]] += 1
    rows = []
    for n, c in count.items():
        text = min(texts[n].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        etype = min(types[n].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        rows.append({"norm": n, "text": text, "type": etype, "count": c, "doc_count": len(docs_of[n])})
    return sorted(rows, key=lambda r: (-r["count"], r["norm"]))


def write_entities_dir(out_dir: str | Path, files: list[Path], max_docs: int = 0) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = [d for f in files for d in read_mentions(Path(f), max_docs)]
    rows = entity_table(docs)
    with open(out / "entities.jsonl", "w", encoding="utf-8") as f:
        f.writelines(dumps(r) + "\n" for r in rows)
    w = ShardedJsonlWriter(out / "mentions")
    for d in docs:
        w.write(d)
    w.close()
    return {"docs": len(docs), "entities": len(rows), "mentions": sum(len(d["entities"]) for d in docs)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--max-docs", type=int, default=0, help="per file; 0 = all")
    a = ap.parse_args(argv)
    stats = write_entities_dir(a.out_dir, a.files, a.max_docs)
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main(sys.argv[1:])
