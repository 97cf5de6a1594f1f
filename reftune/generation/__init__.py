"""Sampling: batched decoding with a preallocated KV cache, returning the `Rollout` that RL trains on."""
