"""The CPT data-ordering curriculum (paper §3.4): warm-up model embeddings, UMAP -> HDBSCAN, clusters
ordered most to least compact, mixed transitions with replay, a seeded held-out split.

- config.py   the typed `cpt_order:` section (held-out, warm-up, embedding, UMAP, HDBSCAN params)
- embed.py    mean-pooled intermediate-layer embeddings; UMAP -> HDBSCAN
- order.py    compactness ranking, noise placement, transitions and replay (numpy only)
- plot.py     the 2-D curriculum map
- run.py      what the `cpt_order` stage does (tasks/cpt_order.py is the stage)

Training pieces (encoding, collation, the warm-up Trainer, seeded splits) come from tasks/training/.
"""
