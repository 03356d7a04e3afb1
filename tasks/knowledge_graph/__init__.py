"""The medical knowledge graph (paper §3.3.1): edge sources (PubTator CID, MedQuAD, lexical patterns or
the LLM, co-occurrence), provenance per edge, a CSR graph with weighted random walks."""
