"""Continual pre-training (paper §3.4): what the `cpt` stage trains and measures, on the generic training
library (`tasks/training`), over the curriculum's ordered manifest (`tasks/curriculum`, stage cpt_order).

- config.py   the typed `cpt:` section (CptConfig, ModelLogParams)
- run.py      schedule, run key, resume, training, held-out perplexity before/after, outputs
              (tasks/cpt.py is the stage)
"""
