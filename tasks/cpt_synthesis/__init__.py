"""CPT data synthesis (paper §3.3): text knowledge from the KG, image knowledge, captions, OCR, mixing.

Each part is a function over plain inputs that returns kept samples and rejected items with a reason
(`samples.Outcome`); every LLM role has a local implementation behind the same interface. The stage
shell `tasks/cpt_data.py` binds them to params, files and MLflow.
"""
