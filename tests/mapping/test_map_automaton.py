"""Word-boundary Aho-Corasick matching (tasks/mapping/automaton.py)."""

from __future__ import annotations

from mapping.test_map_fixtures import tiny_tree

from tasks.mapping.automaton import EntityMatcher, fold, tree_entries


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


def test_stop_keys_leave_the_automaton():
    tree = tiny_tree()
    m = EntityMatcher(tree_entries(tree, stop_keys=["all", "the"]))
    assert hits(m, "ALL patients with breast cancer") == [("breast cancer", ("breast cancer", "e:breast cancer"))]
    assert m.size == len(tree.entity_index()) - 1
