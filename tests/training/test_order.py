"""The §3.4 ordering logic on synthetic embeddings: compactness order, transitions, replay, noise."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.curriculum.config import HdbscanParams, UmapParams
from tasks.curriculum.embed import reduce_and_cluster
from tasks.curriculum.order import (
    NOISE,
    ScheduleParams,
    build_schedule,
    check_schedule,
    compactness,
    place_noise,
    rank_clusters,
    shuffled_schedule,
)


def blobs(spreads=(0.2, 1.5, 0.6), n=(40, 30, 50), dim=8, seed=0):
    """Gaussian blobs with known spreads (tighter = more compact), far apart; labels = blob index."""
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for k, (s, m) in enumerate(zip(spreads, n)):
        centre = np.zeros(dim)
        centre[k] = 40.0
        xs.append(centre + rng.normal(0, s, size=(m, dim)))
        labels += [k] * m
    return np.concatenate(xs), np.array(labels)


def test_compactness_is_mean_pairwise_distance():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert compactness(x, np.arange(3), 0, np.random.default_rng(0)) == pytest.approx((5 + 10 + 5) / 3)
    # sampling draws at most sample_size members
    big, _ = blobs(n=(500, 1, 1))
    score = compactness(big, np.arange(500), 50, np.random.default_rng(0))
    assert score == pytest.approx(compactness(big, np.arange(500), 0, np.random.default_rng(0)), rel=0.15)


def test_clusters_ranked_most_compact_first():
    x, labels = blobs()
    ranking = rank_clusters(x, labels, labels, sample_size=100, seed=0)
    assert [c.label for c in ranking] == [0, 2, 1]          # spreads 0.2 < 0.6 < 1.5
    scores = [c.compactness for c in ranking]
    assert scores == sorted(scores)
    assert [c.rank for c in ranking] == [0, 1, 2]


def test_noise_placed_at_nearest_centroid_or_final_region():
    coords = np.array([[0.0, 0], [0.2, 0], [10, 10], [10.1, 10], [0.5, 0.4], [9, 9.5]])
    labels = np.array([0, 0, 1, 1, NOISE, NOISE])
    placed, is_noise = place_noise(labels, coords, "nearest_centroid")
    assert placed.tolist() == [0, 0, 1, 1, 0, 1]
    assert is_noise.tolist() == [False] * 4 + [True] * 2
    kept, _ = place_noise(labels, coords, "final_region")
    assert kept.tolist() == labels.tolist()
    ranking = rank_clusters(coords, labels, kept, sample_size=0, seed=0)
    assert ranking[-1].label == NOISE and ranking[-1].members.tolist() == [4, 5]
    # no cluster at all: one pseudo-cluster of noise, still scheduled
    all_noise = np.full(6, NOISE)
    placed, _ = place_noise(all_noise, coords)
    entries = build_schedule(rank_clusters(coords, all_noise, placed, sample_size=0, seed=0),
                             ScheduleParams(), seed=0)
    check_schedule(entries, 6)


def test_noise_points_do_not_change_compactness():
    x, labels = blobs()
    noisy = labels.copy()
    noisy[:3] = NOISE                                       # three members of the compact blob become noise
    x = x.copy()
    x[:3] += 25.0                                           # ... and are far away
    placed, _ = place_noise(noisy, x)
    ranking = rank_clusters(x, noisy, placed, sample_size=0, seed=0)
    assert ranking[0].label == 0 and ranking[0].n_noise == 3 and ranking[0].n_core == 37


@pytest.mark.parametrize("mix,replay", [(0.15, 0.1), (0.3, 0.5), (0.0, 0.0)])
def test_schedule_covers_every_sample_once_plus_replays(mix, replay):
    x, labels = blobs()
    ranking = rank_clusters(x, labels, labels, sample_size=50, seed=1)
    entries = build_schedule(ranking, ScheduleParams(mix_fraction=mix, replay_fraction=replay), seed=1)
    check_schedule(entries, len(x))
    non_replay = [e["index"] for e in entries if not e["replay"]]
    assert sorted(non_replay) == list(range(len(x)))
    if mix == 0:
        assert all(e["region"] == "cluster" for e in entries)
        assert [e["rank"] for e in entries] == sorted(e["rank"] for e in entries)   # blocks in rank order


def test_transitions_mix_both_clusters_with_replay_from_earlier():
    x, labels = blobs(n=(40, 30, 50))
    ranking = rank_clusters(x, labels, labels, sample_size=50, seed=2)
    entries = build_schedule(ranking, ScheduleParams(mix_fraction=0.2, replay_fraction=0.25), seed=2)
    regions = []
    for e in entries:
        if not regions or regions[-1][0] != e["region_index"]:
            regions.append((e["region_index"], e["region"], []))
        regions[-1][2].append(e)
    assert [r[1] for r in regions] == ["cluster", "transition", "cluster", "transition", "cluster"]
    first_seen = {}
    for pos, e in enumerate(entries):
        if not e["replay"]:
            first_seen.setdefault(e["index"], pos)
    for _, kind, items in regions:
        if kind != "transition":
            continue
        a, b = items[0]["between"]
        fresh = [e for e in items if not e["replay"]]
        assert {e["rank"] for e in fresh} == {a, b}, "a transition samples both neighbouring clusters"
        assert sum(e["rank"] == a for e in fresh) >= 1 and sum(e["rank"] == b for e in fresh) >= 1
        replays = [e for e in items if e["replay"]]
        assert len(replays) == int(np.ceil(0.25 * len(fresh)))
        start = entries.index(items[0])
        for r in replays:
            assert r["rank"] <= a, "replay comes from earlier clusters"
            assert first_seen[r["index"]] < start, "replayed sample was trained before the region"
        # shuffled: the two clusters interleave rather than sit in two blocks
        ranks = [e["rank"] for e in fresh]
        assert ranks != sorted(ranks) and ranks != sorted(ranks, reverse=True)


def test_schedule_is_seeded():
    x, labels = blobs()
    ranking = rank_clusters(x, labels, labels, sample_size=50, seed=3)
    a = build_schedule(ranking, ScheduleParams(), seed=3)
    b = build_schedule(ranking, ScheduleParams(), seed=3)
    c = build_schedule(ranking, ScheduleParams(), seed=4)
    assert a == b and a != c
    shuffled = shuffled_schedule(a, seed=3)
    assert sorted(map(str, shuffled)) == sorted(map(str, a)) and shuffled != a


def test_umap_hdbscan_recovers_blobs_and_is_seeded():
    x, truth = blobs(n=(60, 60, 60), dim=16, seed=5)
    up, hp = UmapParams(n_components=3, n_neighbors=10), HdbscanParams(min_cluster_size=10)
    coords, coords_2d, labels = reduce_and_cluster(x.astype(np.float32), up, hp, seed=7)
    assert coords.shape == (180, 3) and coords_2d.shape == (180, 2)
    found = labels[labels != NOISE]
    assert len(set(found.tolist())) == 3
    for k in range(3):                                      # each blob is one cluster
        assert len(set(labels[(truth == k) & (labels != NOISE)].tolist())) == 1
    again = reduce_and_cluster(x.astype(np.float32), up, hp, seed=7)
    assert np.array_equal(again[2], labels) and np.allclose(again[0], coords)


def test_tiny_inputs_skip_clustering():
    _, coords_2d, labels = reduce_and_cluster(np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32),
                                                   UmapParams(), HdbscanParams(), seed=0)
    assert labels.tolist() == [NOISE] * 4 and coords_2d.shape == (4, 2)


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_general_text_is_replayed_in_every_region_at_its_share(share):
    x, labels = blobs()
    ranking = rank_clusters(x, labels, labels, sample_size=50, seed=1)
    params = ScheduleParams(mix_fraction=0.15, replay_fraction=0.1, general_share=share)
    entries = build_schedule(ranking, params, seed=1, general_pool=7)
    check_schedule(entries, len(x), general_pool=7)
    general = [e for e in entries if e["general"]]
    assert {e["index"] for e in general} == set(range(7))                # the pool cycles, all of it used
    assert all(e["replay"] and e["cluster"] is None for e in general)
    for r in sorted({e["region_index"] for e in entries}):
        region = [e for e in entries if e["region_index"] == r]
        n_general = sum(e["general"] for e in region)
        assert abs(n_general - share * len(region)) <= 1, (r, n_general, len(region))
        # spread through the region, not appended as a block at its end
        flags = [e["general"] for e in region]
        assert flags != sorted(flags) or len(region) < 4
    # the curriculum itself is unchanged: every clustered sample exactly once, clusters in rank order
    fresh = [e["index"] for e in entries if not e["replay"]]
    assert sorted(fresh) == list(range(len(x)))


def test_general_share_zero_keeps_the_schedule_as_it_was():
    x, labels = blobs()
    ranking = rank_clusters(x, labels, labels, sample_size=50, seed=1)
    plain = build_schedule(ranking, ScheduleParams(), seed=1)
    with_pool = build_schedule(ranking, ScheduleParams(general_share=0.0), seed=1, general_pool=5)
    assert plain == with_pool and not any(e["general"] for e in plain)


def test_check_schedule_rejects_general_entries_outside_the_pool():
    x, labels = blobs()
    ranking = rank_clusters(x, labels, labels, sample_size=50, seed=1)
    entries = build_schedule(ranking, ScheduleParams(general_share=0.3), seed=1, general_pool=4)
    with pytest.raises(AssertionError, match="general-pool position"):
        check_schedule(entries, len(x), general_pool=3)
    with pytest.raises(ValueError, match="general_share"):
        ScheduleParams(general_share=1.0)
