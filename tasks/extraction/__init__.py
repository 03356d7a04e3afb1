"""Entity extraction and typing (paper §3.2 Stages 1+2): sentence splitting, the CRF (local) and the
batched strict-JSON prompt (LLM) behind one interface, the entity table, P/R/F1 on gold PubTator."""
