"""The CPT data-ordering curriculum (paper §3.4): warm-up model embeddings, UMAP -> HDBSCAN, clusters
ordered most to least compact, mixed transitions with replay, a seeded held-out split."""
