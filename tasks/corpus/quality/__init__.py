"""Model-based quality filtering (paper §3.1): a self-bootstrapped fastText classifier.

Modules: signals (rule signals), degrade (synthetic negatives), classifier (fastText),
verifiers (LocalVerifier / LLMVerifier), bootstrap (the loop), run (`QualityConfig` and
`quality_filter`, what the stage runs: I/O around the loop); the evaluation on real text:
real_eval (params, orchestration), real_holdout (provenance labels, leave-one-family-out),
review (human review export/import), rates (Wilson and balanced-accuracy intervals).
Import from the modules; nothing is re-exported here so no name shadows a submodule.
"""
