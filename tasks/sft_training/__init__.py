"""Supervised fine-tuning on the SFT set (paper §5.1.3); the stage is tasks/sft.py."""
