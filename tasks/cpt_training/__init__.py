"""Continual pre-training (paper §3.4): what the `cpt` stage trains, on the generic training library
(`tasks/training`), over the curriculum's ordered manifest."""
