"""CPT data synthesis (paper §3.3): text knowledge from the KG, image knowledge, captions, OCR, mixing.

Each part is a function over plain inputs that returns kept samples and rejected items with a reason
(`samples.Outcome`); every LLM role has a local implementation behind the same interface. `run.py`
holds the stage's typed config (`CptDataConfig`) and `synthesize`, which binds the parts to the files;
the stage module `tasks/cpt_data.py` runs it on the stage contract (tasks.common.stage).
"""
