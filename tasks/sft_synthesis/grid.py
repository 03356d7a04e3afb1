"""Coverage-balanced sampling over the "site x disease/lesion x difficulty" grid (paper §5.1.1).

    cells = [cell_of(s, annotate, difficulty, params) for s in samples]
    selected, table = balance(samples, cells, params, seed=1234)
    rows = grid_table(table["before"], table["after"])
    heatmap(rows, out / "coverage_grid.png")

The stage supplies the two inputs a cell needs:
- `annotate(text) -> [(name, type, tree_class)]`: the entities the project's KG automaton finds in the text,
  with their entity type (Anatomy, Disease, Symptom, ...) and their Medical Entity Tree class (None when
  the entity is not attached to the tree);
- `difficulty[id]`: the current checkpoint's pass rate on the sample, in [0, 1] (None: not measured).

1. A sample's cell (`cell_of`): the text is its first user turn plus its reference answer (a "most likely
   diagnosis?" question names the disease in the answer). site = the tree class that the most Anatomy hits
   fall in (ties: the class seen first; counting classes, not names, so "left lung" and "right lung" add up),
   disease = the tree class of the first Disease hit (`params.disease_types`; add "Symptom" to read lesions
   and findings as the second axis), either "unspecified" without one; band = easy (pass rate >= 0.75:
   the checkpoint already solves it), hard (< 0.25), medium between, unknown without a rate. A variant made
   by rewriting inherits the rate of its original (`meta.rewrite_of`).
2. Targets (`balance`): the per-cell target is the `target_quantile` of the cell sizes (the median by
   default; rounded up) or `params.target`. The cell with neither site nor disease ("unspecified" twice:
   what the automaton could not place) is left whole unless `cut_unplaced`, and does not enter the
   quantiles. A
   high-risk cell (its disease class matches a `params.high_risk` keyword at a word start, or its band is in
   `params.high_risk_bands`) gets round(target * risk_weight), so error-prone critical regions keep and
   receive more supervision.
3. Downsampling: a cell above its target keeps a seeded sample of `target` members; every other member is a
   rejection (gate "coverage", reason "cell_over_target").
4. Oversampling: a long-tail cell (size at or below the `tail_quantile` quantile of cell sizes and below the
   target: a grid of many singletons has a quantile of 1, and the singletons are its tail; numpy's
   linear interpolation) or a high-risk cell below its target is repeated up to min(target, size *
   max_oversample) samples. Repeats cycle through a seeded permutation of the cell's members; the k-th repeat
   of a sample has the id "<id>-r<k>" (content ids are hex hashes, so the suffix cannot collide) and
   meta {repeat: k, repeat_of: <id>}.
Every random draw uses a Generator seeded by (seed, a stable hash of the cell), over members sorted by id, so
the selection depends neither on the input order nor on which other cells exist. Accounting: the table's
`outcome` is a GateOutcome over the originals (read == kept + rejected); repeats are counted apart.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.mid_synthesis.experts import stable_seed
from tasks.sft_synthesis.samples import GateOutcome, user_text, validate_sft_sample

__all__ = ["GridParams", "BANDS", "UNSPECIFIED", "band_of", "cell_of", "is_high_risk", "balance", "grid_table",
           "heatmap"]

BANDS = ("easy", "medium", "hard", "unknown")
UNSPECIFIED = "unspecified"
GATE = "coverage"
Cell = tuple[str, str, str]
Annotate = Callable[[str], Sequence[tuple[str, str, str | None]]]


@dataclasses.dataclass(frozen=True)
class GridParams:
    easy_min: float = 0.75               # pass rate at or above: the checkpoint already solves it
    hard_below: float = 0.25             # pass rate below: it mostly fails (the error-prone region)
    site_types: tuple[str, ...] = ("Anatomy",)     # entity types read as the anatomical site
    disease_types: tuple[str, ...] = ("Disease",)  # entity types read as disease/lesion
    target: int | None = None            # per-cell target; None -> the target_quantile of the cell sizes
    target_quantile: float = 0.5         # 0.5: the median cell, a size the grid has; higher cuts only the crowded
    #                                      cells (a grid of many 1-2 sample cells has a median of 1-2)
    cut_unplaced: bool = False           # the cell with neither site nor disease (what the automaton could not
    #                                      place) is kept whole and never repeated: balancing what the grid cannot
    #                                      see would drop data for no coverage gain
    tail_quantile: float = 0.25          # cells at or below this quantile of sizes (and below target) are the tail
    max_oversample: int = 3              # a repeated cell grows to at most 3x its size: more repeats of the same
    #                                      few samples teach memorisation rather than coverage
    high_risk: tuple[str, ...] = ("neoplasm", "cancer", "carcinoma", "tumor", "tumour", "malignan", "lymphoma",
                                  "leukemia", "cardiovascular", "cardiac", "heart", "coronary", "myocardial",
                                  "stroke", "sepsis", "septic")
    #                                      disease-class keywords (matched at a word start, case-insensitive) of
    #                                      regions where an error costs most: cancers and cardiovascular disease
    high_risk_bands: tuple[str, ...] = ("hard",)   # bands treated as high-risk: where the checkpoint errs
    risk_weight: float = 2.0             # a high-risk cell's target is twice the plain target
    heatmap_top: int = 20                # sites / diseases drawn by name; the rest are summed into "other"

    def __post_init__(self) -> None:
        if not 0.0 <= self.hard_below <= self.easy_min <= 1.0:
            raise ValueError(f"grid: need 0 <= hard_below ({self.hard_below}) <= easy_min ({self.easy_min}) <= 1")
        if self.target is not None and self.target < 1:
            raise ValueError(f"grid.target {self.target} must be >= 1 or None")
        if not 0.0 <= self.tail_quantile <= 1.0 or not 0.0 <= self.target_quantile <= 1.0:
            raise ValueError(f"grid.tail_quantile {self.tail_quantile} and target_quantile {self.target_quantile} "
                             "must be in [0, 1]")
        if self.max_oversample < 1 or self.risk_weight <= 0 or self.heatmap_top < 1:
            raise ValueError("grid: max_oversample >= 1, risk_weight > 0 and heatmap_top >= 1 required")
        if set(self.high_risk_bands) - set(BANDS):
            raise ValueError(f"grid.high_risk_bands {self.high_risk_bands!r}: a subset of {BANDS}")


def band_of(rate: float | None, params: GridParams = GridParams()) -> str:
    """easy / medium / hard from a pass rate in [0, 1]; None -> unknown."""
    if rate is None:
        return "unknown"
    if not (isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0):
        raise ValueError(f"pass rate {rate!r} is not in [0, 1]")
    if rate >= params.easy_min:
        return "easy"
    return "hard" if rate < params.hard_below else "medium"


def cell_of(sample: dict, annotate: Annotate, difficulty: Mapping[str, float | None],
            params: GridParams = GridParams()) -> Cell:
    """(site, disease, band) of one sample (module docstring, step 1)."""
    try:
        text = user_text(sample, 0)
    except IndexError:
        raise ValueError(f"sample {sample.get('id')!r} has no user turn to place on the grid") from None
    answer = str(sample.get("meta", {}).get("answer", ""))
    hits = list(annotate(f"{text}\n{answer}"))
    sites = [cls for _, typ, cls in hits if typ in params.site_types and cls]
    site = UNSPECIFIED
    if sites:
        counts = Counter(sites)
        site = max(counts, key=lambda c: (counts[c], -sites.index(c)))
    disease = next((cls for _, typ, cls in hits if typ in params.disease_types and cls), UNSPECIFIED)
    rate = difficulty.get(sample["id"])
    if rate is None and "rewrite_of" in sample.get("meta", {}):
        rate = difficulty.get(sample["meta"]["rewrite_of"])
    return site, disease, band_of(rate, params)


def is_high_risk(cell: Cell, params: GridParams = GridParams()) -> bool:
    _, disease, band = cell
    if band in params.high_risk_bands:
        return True
    return any(re.search(r"(?<![^\W_])" + re.escape(k), disease, re.IGNORECASE) for k in params.high_risk)


def _unplaced(cell: Cell) -> bool:
    return cell[0] == UNSPECIFIED and cell[1] == UNSPECIFIED


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _repeat(sample: dict, k: int) -> dict:
    return validate_sft_sample({**sample, "id": f"{sample['id']}-r{k}",
                                "meta": {**sample["meta"], "repeat": k, "repeat_of": sample["id"]}})


def balance(samples: Sequence[dict], cells: Sequence[Cell], params: GridParams,
            seed: int) -> tuple[list[dict], dict[str, Any]]:
    """Coverage-balanced selection (module docstring, steps 2-4). `cells[i]` is the cell of `samples[i]`.
    Returns (selected: kept originals in input order, each followed by its repeats; table: {target,
    tail_threshold, cells: per-cell rows, before, after: {cell: count}, read, kept, rejected, repeats,
    outcome: GateOutcome over the originals})."""
    if len(cells) != len(samples):
        raise ValueError(f"{len(cells)} cells for {len(samples)} samples")
    ids = [s["id"] for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique to balance them")
    groups: dict[Cell, list[int]] = {}
    for i, c in enumerate(cells):
        c = tuple(c) if isinstance(c, list) else c          # cells read back from JSON arrive as lists
        if not (isinstance(c, tuple) and len(c) == 3 and all(isinstance(x, str) for x in c)):
            raise ValueError(f"cell of {ids[i]!r} is {c!r}, not a (site, disease, band) tuple of strings")
        groups.setdefault(c, []).append(i)
    outcome = GateOutcome(read=len(samples))
    table: dict[str, Any] = {"target": 0, "tail_threshold": 0.0, "cells": [], "before": {}, "after": {},
                             "read": len(samples), "kept": 0, "rejected": 0, "repeats": 0, "outcome": outcome}
    if not groups:
        return [], table
    keys = sorted(groups)
    placed = [c for c in keys if params.cut_unplaced or not _unplaced(c)]
    sizes = np.array([len(groups[c]) for c in placed] or [0])
    target = params.target if params.target is not None else \
        max(1, int(math.ceil(float(np.quantile(sizes, params.target_quantile)))))
    tail_threshold = float(np.quantile(sizes, params.tail_quantile))
    keep: set[int] = set()
    repeats: dict[int, list[dict]] = {}
    for c in keys:
        members = sorted(groups[c], key=lambda i: ids[i])
        size, risk = len(members), is_high_risk(c, params)
        cell_target = max(1, _half_up(target * params.risk_weight)) if risk else target
        tail = size <= tail_threshold and size < target
        if not params.cut_unplaced and _unplaced(c):
            cell_target, risk, tail = size, False, False
        rng = np.random.default_rng([seed, stable_seed(*c)])
        n_rep = 0
        if size > cell_target:
            chosen = {members[j] for j in rng.choice(size, size=cell_target, replace=False)}
            for i in members:
                if i not in chosen:
                    outcome.reject(GATE, "cell_over_target", f"cell {c} has {size} > target {cell_target}",
                                   {"id": ids[i], "cell": list(c)})
            keep |= chosen
        else:
            keep.update(members)
            if tail or risk:
                n_rep = max(0, min(cell_target, size * params.max_oversample) - size)
                order = [members[j] for j in rng.permutation(size)]
                for j in range(n_rep):
                    i = order[j % size]
                    repeats.setdefault(i, []).append(_repeat(samples[i], j // size + 1))
        kept = min(size, cell_target)
        table["cells"].append({"site": c[0], "disease": c[1], "band": c[2], "before": size, "kept": kept,
                               "dropped": size - kept, "repeats": n_rep, "after": kept + n_rep,
                               "target": cell_target, "tail": tail, "high_risk": risk})
    selected: list[dict] = []
    for i, s in enumerate(samples):
        if i in keep:
            selected.append(s)
            outcome.kept.append(s)
            selected.extend(repeats.get(i, []))
    table.update(target=target, tail_threshold=tail_threshold,
                 before={c: len(groups[c]) for c in keys},
                 after={(r["site"], r["disease"], r["band"]): r["after"] for r in table["cells"]},
                 kept=len(outcome.kept), rejected=len(outcome.rejected),
                 repeats=sum(r["repeats"] for r in table["cells"]))
    return selected, table


def _counts(cells: Mapping[Cell, int] | Iterable[Cell]) -> Counter:
    return Counter(dict(cells)) if isinstance(cells, Mapping) else Counter(tuple(c) for c in cells)


def _band_key(band: str) -> tuple[int, str]:
    return (BANDS.index(band) if band in BANDS else len(BANDS), band)


def grid_table(cells_before: Mapping[Cell, int] | Iterable[Cell],
               cells_after: Mapping[Cell, int] | Iterable[Cell]) -> list[dict]:
    """Rows {site, disease, band, before, after} over the union of cells (absent: 0), sorted by site,
    disease and band (easy, medium, hard, unknown). Either argument is {cell: count} or one cell per sample."""
    before, after = _counts(cells_before), _counts(cells_after)
    keys = sorted(set(before) | set(after), key=lambda c: (c[0], c[1], _band_key(c[2])))
    return [{"site": s, "disease": d, "band": b, "before": int(before.get((s, d, b), 0)),
             "after": int(after.get((s, d, b), 0))} for s, d, b in keys]


def _top(rows: list[dict], field: str, top: int) -> list[str]:
    total: Counter = Counter()
    for r in rows:
        total[r[field]] += r["before"] + r["after"]
    names = sorted(total, key=lambda n: (-total[n], n))
    return names[:top] + (["other"] if len(names) > top else [])


def heatmap(table: list[dict], path: str | Path, top: int = GridParams.heatmap_top) -> None:
    """A PNG of site x disease counts: two rows of panels (before, after balancing), one column summed over
    the difficulty bands and one per band present, one colour scale (log(1 + count)) for every panel so
    before and after compare at a glance. The `top` sites and diseases by count are named, the others summed
    into "other"; counts are written in the cells of small grids. Deterministic: fixed order, no timestamps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not table:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no samples on the grid", ha="center", va="center")
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        return
    sites, diseases = _top(table, "site", top), _top(table, "disease", top)
    bands = sorted({r["band"] for r in table}, key=_band_key)
    columns = ["all bands", *bands]
    grids = {(when, col): np.zeros((len(sites), len(diseases)), dtype=int)
             for when in ("before", "after") for col in columns}
    for r in table:
        i = sites.index(r["site"]) if r["site"] in sites else len(sites) - 1
        j = diseases.index(r["disease"]) if r["disease"] in diseases else len(diseases) - 1
        for when in ("before", "after"):
            grids[(when, "all bands")][i, j] += r[when]
            grids[(when, r["band"])][i, j] += r[when]
    vmax = max([float(np.log1p(g.max())) for g in grids.values() if g.size] + [1.0])
    w = max(2.5, 0.3 * len(diseases) + 0.8)
    h = max(2.0, 0.28 * len(sites) + 0.8)
    label_w = 0.07 * max(len(n) for n in sites) + 0.5           # room for the site names of the first column
    label_h = 0.07 * max(len(n) for n in diseases) + 0.5        # and the disease names under the last row
    fig, axes = plt.subplots(2, len(columns), figsize=(w * len(columns) + label_w + 1.5, 2 * h + label_h + 1.0),
                             squeeze=False, layout="constrained")
    image = None
    for row, when in enumerate(("before", "after")):
        for col, name in enumerate(columns):
            ax, g = axes[row][col], grids[(when, name)]
            image = ax.imshow(np.log1p(g), vmin=0.0, vmax=vmax, cmap="viridis", aspect="auto")
            ax.set_title(f"{when}: {name} (n={int(g.sum())})", fontsize=9)
            # names only on the outer panels: every panel shares the same rows and columns
            ax.set_xticks(range(len(diseases)), diseases if row == 1 else [], rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(sites)), sites if col == 0 else [], fontsize=7)
            if len(sites) * len(diseases) <= 150:
                for (i, j), v in np.ndenumerate(g):
                    if v:
                        light = np.log1p(v) > 0.6 * vmax             # viridis turns yellow: dark text there
                        ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                                color="black" if light else "white")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="log(1 + samples)", shrink=0.8)
    axes[0][0].set_ylabel("anatomical site")
    axes[1][0].set_ylabel("anatomical site")
    fig.suptitle("SFT coverage grid: anatomical site x disease/lesion, per difficulty band")
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
