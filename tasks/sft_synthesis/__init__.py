"""SFT data construction (paper §5.1): candidate pools, multi-expert consensus with a human review queue,
prompt rewriting, coverage-balanced sampling and instruction-following data. The stage is tasks/sft_data.py."""
