"""Mid-training (paper §4.2): the phased curriculum over data/mid_data with a CPT replay buffer.

`config.py` is the stage's typed params section, `schedule.py` the four-phase schedule with the
progressive reasoning-share warm-up, `trainer.py` the loss per data family and phase, `run.py` the
training run (tasks/mid_train.py is the stage)."""
