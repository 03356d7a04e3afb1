"""The medical knowledge graph (paper §3.3.1): edge sources (PubTator CID, MedQuAD, lexical patterns or
the LLM, co-occurrence), provenance per edge, relation type signatures that reject mistyped edges,
edge precision against held-out CID gold and reviewed samples, a CSR graph with weighted random walks."""
