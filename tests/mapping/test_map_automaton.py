"""Word-boundary Aho-Corasick matching (tasks/mapping/automaton.py)."""

from __future__ import annotations

from mapping.test_map_fixtures import tiny_tree

from tasks.mapping.automaton import (
    EntityMatcher,
    MatchEntry,
    fold,
    is_abbreviation,
    stop_key_report,
    tree_entries,
)


def hits(m, text):
    return [(text[s:e], p) for s, e, p in m.scan(text)]


def test_word_boundaries_and_case_folding():
    m = EntityMatcher([("ALL", "all"), ("small", "small"), ("cell", "cell")])
    assert hits(m, "smALLer") == []                       # not inside a word
    assert hits(m, "smaller cells") == []                 # neither prefix nor plural
    assert hits(m, "ALL, all; All.") == [("ALL", "all"), ("all", "all"), ("All", "all")]
    assert hits(m, "small-cell") == [("small", "small"), ("cell", "cell")]


def test_longest_non_overlapping_and_adjacent():
    m = EntityMatcher([("breast cancer", 1), ("breast", 2), ("cancer", 3), ("patients", 4),
                       ("non-small cell lung cancer", 5), ("lung cancer", 6)])
    assert hits(m, "Breast cancer patients") == [("Breast cancer", 1), ("patients", 4)]
    assert hits(m, "NON SMALL-CELL lung cancer") == [("NON SMALL-CELL lung cancer", 5)]
    assert hits(m, "breast, cancer") == [("breast", 2), ("cancer", 3)]   # two separators: not one entity
    assert hits(m, "lung cancer cancer") == [("lung cancer", 6), ("cancer", 3)]


def test_offsets_with_unicode_and_casefold_expansion():
    m = EntityMatcher([("straße", 1), ("naïve t cell", 2)])
    text = "Die STRASSE? nein: Straße — Naïve T-cell."
    assert fold("Straße") == "straße" and len(fold(text)) == len(text)
    assert hits(m, text) == [("Straße", 1), ("Naïve T-cell", 2)]


def test_tree_entries_map_to_entity_nodes():
    tree = tiny_tree()
    m = EntityMatcher(tree_entries(tree))
    got = hits(m, "T cell counts in ALL and Breast Cancer")
    assert got == [("T cell", ("t cell", "e:t cell")), ("ALL", ("all", "e:all")),
                   ("Breast Cancer", ("breast cancer", "e:breast cancer"))]
    assert m.size == len(tree.entity_index())


def abbreviation_tree():
    """tiny_tree plus NO (nitric oxide) and an entity whose *name* is a stop word in upper case."""
    from tasks.tree.model import Node
    tree = tiny_tree()
    tree.add(Node("e:no", "NO", "c2", 2, "entity", ["no"], 52, True))
    tree.add(Node("e:as", "AS", "c1", 2, "entity", ["aortic stenosis"], 7, True))
    tree.refresh()
    return tree


def test_stop_keys_keep_only_the_upper_case_abbreviation():
    tree = abbreviation_tree()
    m = EntityMatcher(tree_entries(tree, stop_keys=["all", "no", "as", "the"]))
    assert m.size == len(tree.entity_index()) + 1            # every entity keeps its keys (+ the name "AS")
    text = "No ALL here, no NO; All cells, all T cells. NO and AS as well as aortic stenosis, As."
    assert hits(m, text) == [("ALL", ("all", "e:all")), ("NO", ("no", "e:no")), ("NO", ("no", "e:no")),
                   ("AS", ("aortic stenosis", "e:as")), ("aortic stenosis", ("aortic stenosis", "e:as"))]
    # per abbreviation-only entry: upper-case hits kept, the word readings suppressed
    counts = {e.surface: (kept, dropped) for e, kept, dropped in m.abbreviation_counts()}
    assert counts == {"all": (1, 2), "no": (2, 2), "AS": (1, 3)}   # "as well as ..., As."
    assert all(e.abbreviation_only for e, _, _ in m.abbreviation_counts())


def test_suppressed_hits_do_not_shift_the_offsets_of_the_next():
    tree = abbreviation_tree()
    m = EntityMatcher(tree_entries(tree, stop_keys=["all", "no"]))
    text = "no  breast cancer; all lung-cancer and ALL. No cisplatin"
    assert hits(m, text) == [("breast cancer", ("breast cancer", "e:breast cancer")),
                             ("lung-cancer", ("lung cancer", "e:lung cancer")), ("ALL", ("all", "e:all")),
                             ("cisplatin", ("cisplatin", "e:cisplatin"))]
    assert hits(EntityMatcher(tree_entries(tree)), "no all") == [("no", ("no", "e:no")), ("all", ("all", "e:all"))]


def test_stop_key_report_counts_lost_entities():
    tree = abbreviation_tree()
    stop = ["all", "no", "as", "the", "be"]
    m = EntityMatcher(tree_entries(tree, stop))
    for text in ("No sign of ALL.", "all of it, no NO", "no", "the breast cancer"):
        m.scan(text)
    rep = stop_key_report(m, tree, stop)
    assert rep == {
        "configured": 5, "entities_affected": 3, "entities_never_matched": 1,
        "abbreviation_hits": 2, "suppressed_hits": 4,
        "entities": {
            "all": {"name": "ALL", "node": "e:all", "frequency": 1, "keys": ["all"],
                    "abbreviation_hits": 1, "suppressed_hits": 1},
            "aortic stenosis": {"name": "AS", "node": "e:as", "frequency": 7, "keys": ["AS"],
                                "abbreviation_hits": 0, "suppressed_hits": 0},
            "no": {"name": "NO", "node": "e:no", "frequency": 52, "keys": ["no"],
                   "abbreviation_hits": 1, "suppressed_hits": 3}}}
    assert stop_key_report(EntityMatcher(tree_entries(tree)), tree, [])["entities"] == {}


def test_plain_pairs_and_flagged_entries_mix():
    m = EntityMatcher([("cell", 1), MatchEntry("was", 2, True), ("WAS syndrome", 3, False)])
    assert hits(m, "Was the WAS cell was") == [("WAS", 2), ("cell", 1)]
    assert hits(m, "was syndrome") == [("was syndrome", 3)]   # the longer, unflagged key wins
    assert is_abbreviation("N.O.") and not is_abbreviation("No") and not is_abbreviation("12")
