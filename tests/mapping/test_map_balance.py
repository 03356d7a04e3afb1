"""Balancing weights, distribution statistics, per-node aggregation (tasks/mapping/balance.py)."""

from __future__ import annotations

import numpy as np
import pytest
from mapping.test_map_fixtures import tiny_tree, write_corpus

from tasks.common.io import StageSink, shard_paths
from tasks.mapping.automaton import EntityMatcher, tree_entries
from tasks.mapping.balance import distribution_stats, doc_weights, entropy, gini, sparse_domains
from tasks.mapping.run import scan_corpus


def test_gini_and_entropy_known_values():
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)
    assert entropy([1, 1, 1, 1]) == (pytest.approx(2.0), pytest.approx(1.0))


def test_weights_flatten_a_skewed_distribution():
    # one head entity in 90 docs, ten tail entities in one doc each, 5 docs without entities
    docs = [{"head": 1}] * 90 + [{f"tail{i}": 1} for i in range(10)] + [{}] * 5
    freq = {"head": 90, **{f"tail{i}": 1 for i in range(10)}}
    w = doc_weights(docs, freq, temperature=1.0)
    assert w[-5:] == [1.0] * 5                               # no entities -> weight 1
    assert np.mean(w) == pytest.approx(1.0)                  # average 1
    assert w[90] / w[0] == pytest.approx(90.0)               # full inverse frequency at T = 1
    stats = distribution_stats(docs, w)
    assert stats["after"]["gini"] < stats["before"]["gini"]
    assert stats["after"]["entropy_norm"] > stats["before"]["entropy_norm"]
    assert stats["after"]["gini"] == pytest.approx(0.0, abs=1e-9)   # T = 1: perfectly flat
    # tempered: T = 0.5 lies between uniform (T = 0) and full inverse
    w0, w5 = doc_weights(docs, freq, 0.0), doc_weights(docs, freq, 0.5)
    assert w0 == pytest.approx([1.0] * len(docs))
    g5 = distribution_stats(docs, w5)["after"]["gini"]
    assert 0.0 < g5 < stats["before"]["gini"]
    # a doc's weight is the mean over its entities
    w2 = doc_weights([{"a": 1, "b": 1}, {"a": 3}], {"a": 4, "b": 1}, 1.0)
    assert w2[0] / w2[1] == pytest.approx(((1 / 4 + 1) / 2) / (1 / 4))


def test_per_node_aggregation_up_the_ancestors(tmp_path):
    tree = tiny_tree()
    shards = shard_paths(write_corpus(tmp_path / "kept", bad_line=False))
    sink = StageSink(tmp_path / "out")
    sc = scan_corpus(EntityMatcher(tree_entries(tree)), shards, sink, tree)
    sink.close()
    em, nm, nd = sc["ent_mentions"], sc["node_mentions"], sc["node_docs"]
    assert em["breast cancer"] == 4 and em["lung cancer"] == 1 and em["cisplatin"] == 2
    assert em["all"] == 2 and em["t cell"] == 1
    # cancers = breast + lung; Disease = cancers + ALL; root = everything
    assert nm["c1.1"] == 5 and nm["c1"] == 7 and nm["c2"] == 2 and nm["c"] == sum(em.values()) == sc["hits"]
    assert nd["c1.1"] == 3            # doc-1, doc-2, doc-7
    assert nd["c1"] == 5              # + doc-3 and doc-4 (ALL)
    assert nd["c"] == 5 and sc["docs_without_hits"] == 2
    assert nm["e:breast cancer"] == 4 and nd["e:breast cancer"] == 3
    sparse = sparse_domains(tree, nd, nm, bottom_n=2)
    assert [r["node"] for r in sparse] == ["c4", "c3"]     # empty domain first, then the 1-doc Cell
    assert sparse[0]["docs"] == 0 and sparse[0]["path"] == "Empty domain"
