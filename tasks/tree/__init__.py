"""The Medical Entity Tree (paper §3.2 Stages 2+3): embeddings, K-Means hierarchy, long-tail attachment
against the frozen core, conflict resolution, naming and rendering."""
