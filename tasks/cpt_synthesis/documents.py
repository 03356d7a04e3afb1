"""Corpus documents as CPT samples, as often as the entity-balanced mixing plan says (paper §3.3).

    from tasks.cpt_synthesis.documents import DocumentParams, corpus_entry, document_samples
    docs = {rec["id"]: corpus_entry(rec) for rec in kept_records}
    out, report = document_samples(mixture_rows, docs, DocumentParams(max_views=20000), seed=1234)
    out.kept        # samples: kind "text", task "document", source_ids [doc_id], one per planned view
    out.rejected    # one per view that gives no sample: missing_document, empty_text, image_document

A document planned `repeats = r` times (tasks/cpt_synthesis/mixing.py) becomes r samples with the same text and
ids that differ by the view index (`sample_id("document", doc_id, view, text)`): the training stages
read samples, not the mixture, so the repeats have to exist as samples for the balancing to matter,
and distinct ids keep them from collapsing when the id is used as a key. Text longer than
`max_chars` is cut at the last whitespace before the limit (a hard cut only when there is none).

The unit of accounting is the view: inputs = views after the cap, kept + rejected = inputs.

Image documents (records with images: VQA-RAD, PneumoniaMNIST, DICOM) are rejected as
`image_document`: their text is a question/answer about the image or empty, which as plain text
states a finding with nothing to ground it, and the image pipeline (image_attributes.py,
image_knowledge.py) already turns them into image_text samples.

`max_views` (0 = all) caps the total number of views. The cap scales every document's repeats by the
same factor and rounds systematically (mixing.systematic_counts, a seeded order and offset): each
document keeps floor or ceil of its scaled repeats, so the plan's proportions hold and the total is
exactly `max_views`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from tasks.cpt_synthesis.mixing import systematic_counts
from tasks.cpt_synthesis.samples import Outcome, make_sample, sample_id

TASK = "document"
_DETAILS = {"missing_document": "in the mixing plan but not among the kept corpus records",
            "image_document": "a record with images: the image parts cover it",
            "empty_text": "the document text is empty"}


@dataclasses.dataclass
class DocumentParams:
    enabled: bool = True
    max_chars: int = 4000             # document text cut at a whitespace boundary below this
    max_views: int = 0                # 0 = every planned view; else a seeded, proportion-keeping cap


def corpus_entry(rec: dict) -> dict:
    """What the stage keeps of a corpus record for this step (image documents keep no text)."""
    has_images = bool(rec.get("images"))
    return {"source": rec["source"], "text": "" if has_images else rec["text"], "images": has_images}


def cut_text(text: str, max_chars: int) -> tuple[str, bool]:
    """(text stripped and cut to at most `max_chars` at a whitespace boundary, whether it was cut)."""
    text = text.strip()
    if max_chars <= 0 or len(text) <= max_chars:
        return text, False
    head = text[:max_chars + 1]       # one past the limit: a space right at the limit is a clean cut
    cut = max((head.rfind(c) for c in " \n\t"), default=-1)
    return (text[:cut] if cut > 0 else text[:max_chars]).rstrip(), True


def capped_repeats(repeats: list[int], max_views: int, seed: int) -> list[int]:
    """Repeats scaled to `max_views` in total (module docstring); unchanged when under the cap."""
    r = np.asarray(repeats, dtype=np.float64)
    total = r.sum()
    if max_views <= 0 or total <= max_views:
        return [int(x) for x in repeats]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(r))   # seeded order, as in mixing_plan: ties do not follow doc_id order
    counts = np.zeros(len(r), dtype=np.int64)
    counts[order] = systematic_counts(r[order] * (max_views / total), float(rng.random()))
    return counts.tolist()


def document_samples(plan: list[dict], docs: Mapping[str, dict], params: DocumentParams,
                     seed: int) -> tuple[Outcome, dict]:
    """One sample per planned view of each document in `plan` (mixture rows), or a rejection per view."""
    out = Outcome()
    planned = [int(row["repeats"]) for row in plan]
    repeats = capped_repeats(planned, params.max_views, seed)
    truncated = 0
    for row, r in zip(plan, repeats):
        if r <= 0:
            continue
        doc_id = row["doc_id"]
        doc = docs.get(doc_id)
        text, was_cut = cut_text(doc["text"], params.max_chars) if doc else ("", False)
        reason = ("missing_document" if doc is None else "image_document" if doc["images"]
                  else "empty_text" if not text else None)
        if reason:
            for v in range(r):
                out.reject(reason, _DETAILS[reason], {"doc_id": doc_id, "view": v, "repeats": r})
            continue
        truncated += was_cut
        for v in range(r):
            s = make_sample("text", TASK, [doc_id], text=text, source=doc["source"], view=v, repeats=r,
                            truncated=was_cut)
            s["id"] = sample_id(TASK, doc_id, v, text)    # make_sample's id is content-only: views would collide
            out.kept.append(s)
    report = {"enabled": True, "planned_views": int(sum(planned)), "views": int(sum(repeats)),
              "max_views": params.max_views, "max_chars": params.max_chars,
              "documents": sum(1 for r in repeats if r > 0), "truncated_documents": int(truncated)}
    return out, report
