"""AMCS, paper §3.2.3 Eq. (1):

    AMCS(A, Ref) = 1/|A| * sum_i max_j CosineSimilarity(a_i, r_j)

a_i, r_j = sentence-encoder embeddings (Sentence-BERT family; here all-MiniLM-L6-v2, offline) of the
entity strings of A and Ref. Forward coverage = AMCS(A, Ref) with Ref = the entity tree, backward =
AMCS(Ref, A). No threshold enters Eq. (1); `frac_ge` (share of A whose best match reaches
`threshold`) and `exact` (share of A whose normalised string is in Ref) are reported beside it as
readings of the same numbers, not as the metric.

Independence: a target vocabulary the tree was built from (its terms or categories fed the entity
table, e.g. MeSH 2017 as weak supervision for entity typing) covers the tree partly by construction,
so its row is marked `independent: false` with the reason (`provenance`), stays visible in the
table, and is left out of the summary figure (`independent_mean`). The same holds for a target whose
terms are partly drawn from a build vocabulary (the benchmark entities are MeSH/DOID terms found in
benchmark questions): its share of build-vocabulary terms is reported.
"""

from __future__ import annotations

import numpy as np


def max_cosine(a: np.ndarray, ref: np.ndarray, block: int = 4096) -> np.ndarray:
    """Row-wise max cosine of each row of `a` against all rows of `ref` (both L2-normalised)."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.float32)
    if len(ref) == 0:
        return np.zeros(len(a), dtype=np.float32)
    out = np.empty(len(a), dtype=np.float32)
    for i in range(0, len(a), block):
        out[i:i + block] = (a[i:i + block] @ ref.T).max(axis=1)
    return np.clip(out, -1.0, 1.0)


def amcs(a: np.ndarray, ref: np.ndarray) -> float:
    """Eq. (1) on L2-normalised embedding matrices; 0.0 for an empty A."""
    best = max_cosine(a, ref)
    return float(best.mean()) if len(best) else 0.0


def coverage_row(name: str, a_terms: list[str], a_emb: np.ndarray, ref_terms: list[str],
                 ref_emb: np.ndarray, threshold: float, full_size: int) -> dict:
    fwd = max_cosine(a_emb, ref_emb)
    bwd = max_cosine(ref_emb, a_emb)
    ref_set, a_set = set(ref_terms), set(a_terms)
    return {
        "target": name, "size": len(a_terms), "full_size": full_size, "ref_size": len(ref_terms),
        "forward": round(float(fwd.mean()) if len(fwd) else 0.0, 4),
        "backward": round(float(bwd.mean()) if len(bwd) else 0.0, 4),
        "forward_frac_ge": round(float((fwd >= threshold).mean()) if len(fwd) else 0.0, 4),
        "backward_frac_ge": round(float((bwd >= threshold).mean()) if len(bwd) else 0.0, 4),
        "forward_exact": round(len(a_set & ref_set) / len(a_set), 4) if a_set else 0.0,
        "backward_exact": round(len(a_set & ref_set) / len(ref_set), 4) if ref_set else 0.0,
    }


def provenance(name: str, build_vocabs, derived_shares: dict[str, float] | None = None) -> dict:
    """Whether target `name` is independent evidence of coverage: not if it was used to build the
    tree, nor if part of its terms are terms of a build vocabulary (`derived_shares`: build vocabulary
    -> share of the target's terms that are its terms)."""
    if name in build_vocabs:
        return {"independent": False, "why": "used to build the tree"}
    derived = {v: s for v, s in sorted((derived_shares or {}).items()) if s > 0}
    if derived:
        parts = ", ".join(f"{s:.0%} of its terms are {v} terms" for v, s in derived.items())
        return {"independent": False, "why": f"partly derived from a build vocabulary: {parts}",
                "derived_from": {v: round(s, 4) for v, s in derived.items()}}
    return {"independent": True, "why": ""}


def independent_mean(rows: list[dict]) -> dict:
    """The unweighted mean forward/backward AMCS over the independent targets only (None if none)."""
    ind = [r for r in rows if r.get("independent", True)]
    mean = (lambda k: round(sum(r[k] for r in ind) / len(ind), 4) if ind else None)
    return {"targets": [r["target"] for r in ind],
            "excluded": [r["target"] for r in rows if not r.get("independent", True)],
            "forward": mean("forward"), "backward": mean("backward")}


def interpret(fwd: float, bwd: float) -> str:
    if fwd >= 0.95 and bwd >= 0.95:
        return "near-equivalent sets"
    if fwd >= bwd:
        return "high inclusion, Ref is broader" if fwd >= 0.9 else "Ref broader, partial inclusion"
    return "A is broader than Ref"


def render_table(rows: list[dict], threshold: float, encoder: str, build_vocabs=()) -> str:
    built = ", ".join(build_vocabs) or "none of the targets"
    lines = ["# Semantic coverage: forward vs. backward AMCS (paper Table 2, Eq. (1))", "",
             f"Ref = the Medical Entity Tree's entities; encoder = {encoder}; "
             f"frac>= = share of best matches with cosine >= {threshold}; exact = normalised string match. "
             f"Vocabularies used to build the tree: {built}.", "",
             "| Target set (A) | \\|A\\| (of full) | Forward AMCS(A, Ref) | Backward AMCS(Ref, A) "
             "| fwd frac>= | bwd frac>= | fwd exact | bwd exact | Interpretation | Independent evidence |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ind = "yes" if r.get("independent", True) else f"**no**: {r['why']}"
        lines.append(f"| {r['target']} | {r['size']} ({r['full_size']}) | {r['forward']:.2f} | "
                     f"{r['backward']:.2f} | {r['forward_frac_ge']:.2f} | {r['backward_frac_ge']:.2f} | "
                     f"{r['forward_exact']:.2f} | {r['backward_exact']:.2f} | "
                     f"{interpret(r['forward'], r['backward'])} | {ind} |")
    m = independent_mean(rows)
    lines.append("")
    if m["excluded"]:
        lines.append(f"Not independent evidence of coverage: {', '.join(m['excluded'])} -- a vocabulary the tree "
                     "was built from covers it partly by construction; shown for reference, excluded below.")
    if m["targets"]:
        lines.append(f"Mean over the independent targets ({', '.join(m['targets'])}): "
                     f"forward {m['forward']:.2f}, backward {m['backward']:.2f}.")
    else:
        lines.append("No independent target: no summary coverage figure.")
    return "\n".join(lines) + "\n"
