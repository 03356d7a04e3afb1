"""Corpus mapping onto the tree (paper §3.2): Aho-Corasick over the corpus, per-entity and per-node
frequencies, AMCS coverage against reference vocabularies, inverse-frequency balancing weights."""
