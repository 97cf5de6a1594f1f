"""What every stage shares: the run record (folders, locks, resume, Ctrl-C, checkpoints), the accelerator
and the model a stage starts from, data order, batches, the PPO update, sharding, tracking, summaries."""
