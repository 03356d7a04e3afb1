"""The generic training library: CPT uses it now; mid-training, SFT and RL will use it next.

No DVC or MLflow knowledge here (stages log through the functions they pass in); no CPT specifics
(the curriculum is tasks/curriculum/, what CPT trains and measures is tasks/cpt_training/).

Modules:
- config.py        TrainParams: the `train:` block of a training stage's params (device included)
- device.py        resolve(device) -> (torch.device, dtype, dist backend): cuda+bf16+nccl or cpu+fp32+gloo;
                   world() (rank, world size)
- encode.py        sample -> token ids + image references (+ assistant-token mask for conversations);
                   bad samples rejected with a reason before training
- dataset.py       OrderedDataset: a schedule of encoded samples, fingerprinted
- collate.py       Collator: padding, labels (every token, or assistant tokens only:
                   `assistant_only_loss`), images loaded per batch; split_batch
- sampler.py       order-keeping, resumable sampler
- splits.py        reading sample shards; seeded id-hash splits (cap, held-out, warm-up subset)
- checkpoints.py   run key, checkpoint completeness (missing shards), which checkpoint to resume
- model_io.py      load a checkpoint to train; save what was trained in the project's layout
- mlflow_model.py  log (and register) a trained model with mlflow.transformers
- optim.py         learning rate per component (vision tower, adapter, decoder): optimizer param groups
- trainer.py       training_arguments (device-aware), ScheduleTrainer (order kept and traced,
                   per-component learning rates)
- perplexity.py    token-level perplexity through the collator
- callbacks/       one Trainer callback per file: metrics.py, completion_marker.py
- ds_zero2.json / ds_zero3.json   DeepSpeed configs for torchrun/deepspeed launches (precision "auto":
                   bf16 on CUDA, float32 on the CPU)
"""
