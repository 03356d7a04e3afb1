"""Continual pre-training (paper §3.4): curriculum ordering of the CPT corpus and single-stage training.

Modules (domain logic, no DVC/MLflow knowledge; the stage shells are tasks/cpt_order.py and tasks/cpt.py):
- config.py       typed `cpt_order:` / `cpt:` params sections
- data.py         CPT sample -> token ids (+ image references), bad samples skipped with a reason;
                  a Dataset in a given order and the collator that builds batches
- embed.py        warm-up subset, mean-pooled hidden states at an intermediate decoder layer,
                  UMAP -> HDBSCAN
- order.py        compactness ranking, noise placement, mixed transition regions with replay buffers
- order_plot.py   the 2-D map coloured by cluster, annotated with the curriculum order
- sampler.py      order-keeping, resumable sampler
- checkpoints.py  run hash, checkpoint completeness (missing shards), which checkpoint to resume
- trainer.py      Trainer subclass + callbacks (tokens/s, MLflow metrics, order trace), held-out perplexity
- order_stage.py / cpt_stage.py   what the two stages do, given a config and an output directory
- ds_zero2.json / ds_zero3.json   DeepSpeed configs used under torchrun/deepspeed launchers
"""
