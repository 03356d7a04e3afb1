"""Model-based quality filtering (paper §3.1): a self-bootstrapped fastText classifier.

Modules: signals (rule signals), degrade (synthetic negatives), classifier (fastText),
verifiers (LocalVerifier / LLMVerifier), bootstrap (the loop), run (`QualityConfig` and
`quality_filter`, what the stage runs: I/O around the loop).
Import from the modules; nothing is re-exported here so no name shadows a submodule.
"""
