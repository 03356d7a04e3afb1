"""Decontamination of mid-training samples against every benchmark (text 13-grams and images).

    index = BenchmarkIndex.build("${data_root}/benchmarks")         # the clean stage's index
    out, report = decontaminate(samples, index)      # GateOutcome (gate "decontamination"), report rows

The index is the one `clean` builds for the corpus (tasks/corpus/clean/decontam.py): word 13-grams of
every benchmark test item (boilerplate n-grams shared by many items left out) and image sha256 plus
perceptual hashes. A sample is checked on everything it would train on: every message's text, the
reasoning in <think>, tool-call arguments and tool results, and every image (originals and tool
crops). Why again after `clean`: the engines write new text (multi-hop questions, reasoning chains)
and bring in sources `clean` never saw (VQA-RAD train, MedQuAD QA pairs, the HuatuoGPT-o1 sample,
whose questions are MedQA-style vignettes), so a copy of a test item can enter here first.

The report has one row per (sample, benchmark item) collision: the family, the benchmark, the item,
the kind (text, image_sha256, image_phash) and the evidence (the shared n-gram or the hash distance).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tasks.common.config import resolve
from tasks.corpus.clean.decontam import BenchmarkIndex
from tasks.mid_synthesis.samples import GateOutcome


def sample_texts(sample: dict) -> list[str]:
    """Every text a sample trains on or shows the model."""
    texts = []
    for m in sample["messages"]:
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict)]
        if m.get("reasoning_content"):
            texts.append(m["reasoning_content"])
        for call in m.get("tool_calls") or []:
            texts.append(json.dumps(call.get("function", {}).get("arguments", {}), ensure_ascii=False))
    return [t for t in texts if t]


def decontaminate(samples: Iterable[dict], index: BenchmarkIndex) -> tuple[GateOutcome, list[dict]]:
    out = GateOutcome()
    report: list[dict] = []
    for s in samples:
        out.read += 1
        hits = []
        for text in sample_texts(s):
            hits += index.check_text(text)
        for img in s["images"]:
            try:
                hits += index.check_image(img["sha256"], resolve(img["path"]))
            except (OSError, ValueError) as e:
                out.reject("decontamination", "image_unreadable", f"{img['path']}: {e}", {"id": s["id"]})
                break
        else:
            if not hits:
                out.kept.append(s)
                continue
            seen = set()
            for h in hits:
                if (h.benchmark, h.item) in seen:
                    continue
                seen.add((h.benchmark, h.item))
                report.append({"sample": s["id"], "family": s["family"], "benchmark": h.benchmark,
                               "item": h.item, "kind": h.kind, "evidence": h.evidence})
            first = hits[0]
            out.reject("decontamination", f"benchmark_{first.kind}",
                       f"{len(seen)} benchmark item(s), first {first.benchmark}/{first.item}: {first.evidence}",
                       {"id": s["id"], "family": s["family"]})
    return out, report
