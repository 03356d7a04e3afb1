"""Coverage-balanced sampling: cells, hand-computed balancing, accounting, the table and the heat-map."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tasks.sft_synthesis.grid import GridParams, balance, band_of, cell_of, grid_table, heatmap, is_high_risk
from tasks.sft_synthesis.samples import sft_sample, with_messages

LEX = {"left lung": ("Anatomy", "Respiratory System"), "right lung": ("Anatomy", "Respiratory System"),
       "heart": ("Anatomy", "Cardiovascular System"), "toe": ("Anatomy", None),
       "pneumonia": ("Disease", "Respiratory Tract Infections"), "myocarditis": ("Disease", "Heart Diseases"),
       "fever": ("Symptom", "Signs and Symptoms")}


def annotate(text):
    """What the stage's KG automaton gives: (name, type, tree class) in text order."""
    low = text.lower()
    hits = []
    for name, (typ, cls) in LEX.items():
        start = low.find(name)
        while start >= 0:
            hits.append((start, name, typ, cls))
            start = low.find(name, start + 1)
    return [(n, t, c) for _, n, t, c in sorted(hits)]


def _sample(text, answer="an answer", source="medquad"):
    return sft_sample(source, [f"src:{text}"], [{"role": "user", "content": text},
                                                {"role": "assistant", "content": answer}],
                      answer=answer, answer_kind="open", accuracy="consensus")


# ==== cells =========================================================================================
def test_cell_of_reads_site_disease_and_band():
    s1 = _sample("Heart sounds are normal; the left lung and right lung show consolidation with fever.", "pneumonia")
    s2 = _sample("Does the heart show myocarditis or pneumonia?")
    s3 = _sample("The heart and the left lung are examined.")
    s4 = _sample("The toe hurts.")
    diff = {s1["id"]: 0.75, s2["id"]: 0.7499, s3["id"]: 0.2499, s4["id"]: None}
    # two lung hits outvote the heart named first; the disease comes from the answer
    assert cell_of(s1, annotate, diff) == ("Respiratory System", "Respiratory Tract Infections", "easy")
    assert cell_of(s2, annotate, diff) == ("Cardiovascular System", "Heart Diseases", "medium")   # first disease
    assert cell_of(s3, annotate, diff) == ("Cardiovascular System", "unspecified", "hard")        # tie: first seen
    assert cell_of(s4, annotate, diff) == ("unspecified", "unspecified", "unknown")               # no tree class
    assert cell_of(s4, annotate, {}) == ("unspecified", "unspecified", "unknown")
    variant = with_messages(s2, [{"role": "user", "content": "Is myocarditis visible in the heart?"},
                                 s2["messages"][1]], rewrite_of=s2["id"], rewriter="local")
    assert cell_of(variant, annotate, diff)[2] == "medium"          # a variant inherits its original's rate
    with pytest.raises(ValueError):
        cell_of(s1, annotate, {s1["id"]: 1.2})


def test_bands_and_high_risk():
    assert [band_of(r) for r in (1.0, 0.75, 0.74, 0.25, 0.24, 0.0, None)] == [
        "easy", "easy", "medium", "medium", "hard", "hard", "unknown"]
    assert is_high_risk(("Skin", "Neoplasms, Benign", "easy"))
    assert is_high_risk(("Chest", "Heart Diseases", "medium"))
    assert is_high_risk(("Chest", "Infection", "hard"))                  # the band alone makes it high-risk
    assert not is_high_risk(("Chest", "Infection", "easy"))
    assert not is_high_risk(("Chest", "Antineoplastic Reactions", "easy"))   # keywords match at a word start
    with pytest.raises(ValueError):
        GridParams(easy_min=0.2, hard_below=0.5)


# ==== balancing =====================================================================================
A = ("Respiratory", "Infection", "medium")
B = ("Respiratory", "Asthma", "easy")
C = ("Digestive", "Neoplasms", "medium")       # high-risk disease class
D = ("Skin", "Dermatitis", "hard")              # high-risk band
E = ("Eye", "Glaucoma", "easy")                 # the long tail
SIZES = {A: 8, B: 4, C: 4, D: 2, E: 1}


def _grid():
    samples, cells = [], []
    for c, n in SIZES.items():
        for i in range(n):
            samples.append(_sample(f"{c[1]} question {i}"))
            cells.append(c)
    return samples, cells


def test_balance_by_hand():
    # sizes 1, 2, 4, 4, 8: target = median 4; tail threshold = 25% quantile = 2.0, so E (1) and D (2) are the
    # long tail (at or below it, below the target);
    # A is cut to 4; C and D are high-risk (target 2 * 4 = 8) and grow to min(8, 3 x size): C 4 -> 8,
    # D 2 -> 6; E grows to min(4, 3 x 1) = 3; B and its 4 stay as they are
    samples, cells = _grid()
    selected, table = balance(samples, cells, GridParams(), seed=11)
    assert table["target"] == 4 and table["tail_threshold"] == 2.0
    rows = {(r["site"], r["disease"], r["band"]): r for r in table["cells"]}
    assert {c: (r["kept"], r["dropped"], r["repeats"], r["after"]) for c, r in rows.items()} == {
        A: (4, 4, 0, 4), B: (4, 0, 0, 4), C: (4, 0, 4, 8), D: (2, 0, 4, 6), E: (1, 0, 2, 3)}
    assert sorted(c for c, r in rows.items() if r["tail"]) == sorted([D, E])
    assert sorted(c for c, r in rows.items() if r["high_risk"]) == sorted([C, D])
    assert table["after"] == Counter({A: 4, B: 4, C: 8, D: 6, E: 3})
    by_cell = Counter(cells[[s["id"] for s in samples].index(s["meta"].get("repeat_of", s["id"]))] for s in selected)
    assert by_cell == table["after"]
    # D's two members are each repeated twice (r1, r2), E's single member is r1 and r2
    d_ids = {s["id"] for s, c in zip(samples, cells) if c == D}
    assert sorted(s["id"] for s in selected if s["meta"].get("repeat_of") in d_ids) == sorted(
        f"{i}-r{k}" for i in d_ids for k in (1, 2))
    assert all(s["meta"]["repeat"] == int(s["id"].rsplit("-r", 1)[1]) for s in selected if "repeat" in s["meta"])


def test_balance_with_a_fixed_target():
    # target 2: A 8 -> 2, B 4 -> 2; C (high-risk target 4) stays 4; D grows to min(4, 6) = 4; E (tail) to min(2, 3)
    samples, cells = _grid()
    _, table = balance(samples, cells, GridParams(target=2), seed=11)
    assert {(r["site"], r["disease"], r["band"]): (r["dropped"], r["repeats"]) for r in table["cells"]} == {
        A: (6, 0), B: (2, 0), C: (0, 0), D: (0, 2), E: (0, 1)}


def test_balance_accounts_for_every_original():
    samples, cells = _grid()
    selected, table = balance(samples, cells, GridParams(), seed=11)
    out = table["outcome"]
    assert out.read == 19 == len(out.kept) + len(out.rejected)
    assert (len(out.kept), len(out.rejected), table["repeats"]) == (15, 4, 10)
    assert len(selected) == 25 == len(out.kept) + table["repeats"]
    assert out.by_gate() == {"coverage": {"cell_over_target": 4}}
    dropped = {r["item"]["id"] for r in out.rejected}
    assert {cells[i] for i, s in enumerate(samples) if s["id"] in dropped} == {A}
    assert not dropped & {s["id"] for s in selected}
    assert len({s["id"] for s in selected}) == len(selected)            # repeats get ids of their own


def test_balance_is_seeded_and_independent_of_input_order():
    samples, cells = _grid()
    sel1, t1 = balance(samples, cells, GridParams(), seed=11)
    pairs = list(zip(samples, cells))
    random.Random(4).shuffle(pairs)
    sel2, t2 = balance([p[0] for p in pairs], [p[1] for p in pairs], GridParams(), seed=11)
    assert sorted(s["id"] for s in sel1) == sorted(s["id"] for s in sel2)
    assert t1["cells"] == t2["cells"]
    kept_a = {frozenset(s["id"] for s in balance(samples, cells, GridParams(), seed=k)[0]) for k in range(6)}
    assert len(kept_a) > 1                                              # the seed decides which of A stay


def test_balance_rejects_misaligned_input():
    samples, cells = _grid()
    with pytest.raises(ValueError):
        balance(samples, cells[:-1], GridParams(), seed=1)
    with pytest.raises(ValueError):
        balance(samples[:1], [("a", "b")], GridParams(), seed=1)
    assert balance([], [], GridParams(), seed=1)[0] == []


# ==== table and heat-map ============================================================================
def test_grid_table_rows():
    rows = grid_table([A, A, B, E], {A: 1, C: 2})
    assert rows == [
        {"site": "Digestive", "disease": "Neoplasms", "band": "medium", "before": 0, "after": 2},
        {"site": "Eye", "disease": "Glaucoma", "band": "easy", "before": 1, "after": 0},
        {"site": "Respiratory", "disease": "Asthma", "band": "easy", "before": 1, "after": 0},
        {"site": "Respiratory", "disease": "Infection", "band": "medium", "before": 2, "after": 1}]


def test_heatmap_is_written_deterministically(tmp_path):
    samples, cells = _grid()
    _, table = balance(samples, cells, GridParams(), seed=11)
    rows = grid_table(table["before"], table["after"])
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    heatmap(rows, a)
    heatmap(rows, b)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()
    heatmap(rows, tmp_path / "top.png", top=2)                          # other sites/diseases summed
    heatmap([], tmp_path / "empty.png")
    assert (tmp_path / "top.png").stat().st_size > 0 and (tmp_path / "empty.png").stat().st_size > 0


def test_unplaced_cell_is_kept_whole_and_the_target_is_a_quantile_of_placed_cells():
    samples = [_sample(f"q{i}") for i in range(20)]
    cells = ([("unspecified", "unspecified", "unknown")] * 10 + [("Lung", "Infection", "easy")] * 6
             + [("Heart", "Valve Disease", "easy")] * 3 + [("Skin", "Dermatitis", "easy")])
    p = GridParams(target_quantile=0.5, tail_quantile=0.0, high_risk=(), high_risk_bands=())
    selected, table = balance(samples, cells, p, seed=3)
    # placed sizes 1, 3, 6: median 3; the unplaced cell (10) is neither cut, nor repeated, nor in the quantile;
    # the tail threshold is the smallest size, 1: the single Skin sample grows to min(3, 1 x 3) = 3
    assert table["target"] == 3
    assert table["after"] == {("unspecified", "unspecified", "unknown"): 10, ("Lung", "Infection", "easy"): 3,
                              ("Heart", "Valve Disease", "easy"): 3, ("Skin", "Dermatitis", "easy"): 3}
    assert len(selected) == 19 and table["rejected"] == 3 and table["repeats"] == 2
    # cut_unplaced: the unplaced cell is a cell like any other (sizes 1, 3, 6, 10: median 4.5 -> 5)
    _, cut = balance(samples, cells, GridParams(target_quantile=0.5, tail_quantile=0.0, high_risk=(),
                                                high_risk_bands=(), cut_unplaced=True), seed=3)
    assert cut["target"] == 5 and cut["after"][("unspecified", "unspecified", "unknown")] == 5
    # a higher quantile cuts only the crowded cells: the 0.9 quantile of 1, 3, 6 is 5.4 -> 6
    _, loose = balance(samples, cells, GridParams(target_quantile=0.9, tail_quantile=0.0, high_risk=(),
                                                  high_risk_bands=()), seed=3)
    assert loose["target"] == 6 and loose["rejected"] == 0
