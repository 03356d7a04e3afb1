"""Domain logic of the `clean` stage (paper §3.1 plus PHI scrubbing and decontamination).

Each module is small, knows nothing of DVC or MLflow, and is tested on its own:

    normalize   unicode NFC, control characters, whitespace, IU-Xray `XXXX` placeholders
    phi         e-mails, phones, record numbers, secret-bearing URLs -> typed placeholders
    filters     Gopher-style rule filters (length, symbol/digit ratios, repetition)
    dedup       exact (hash of a folded form) and MinHash-LSH near-duplicate removal (rensa)
    decontam    benchmark index (bundled test splits and bring-your-own JSONL files): word
                13-grams, image sha256 and perceptual hash
    chunking    sliding-window chunking of long documents by words
    run         `CleanConfig`, `clean_records` (the chain) and `clean_corpus` (what the stage runs)
"""
