"""A key/value cache for sampling that is allocated once, instead of growing by one token per step.

transformers' DynamicCache concatenates each new token's keys and values onto the cache: every
decoding step allocates a new (rows, heads, length, head_dim) tensor per layer and copies the whole
cache into it. On CPU those allocations are large enough to be fresh pages each time, and at batch
32 on the tiny model that copying took about a tenth of the sampling time. Here each layer writes
into a buffer sized for prompt + max_new_tokens and hands attention a view of the filled part.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values live in buffers of `capacity` positions, allocated when
    the first tokens arrive. `keys` / `values` are views of the filled part, as DynamicLayer's are."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        rows, heads, _, key_dim = key_states.shape
        self.key_buffer = key_states.new_empty(rows, heads, self.capacity, key_dim)
        self.value_buffer = value_states.new_empty(rows, value_states.size(1), self.capacity, value_states.size(-1))
        self.is_initialized = True

    def _expose(self) -> None:
        self.keys = self.key_buffer[:, :, :self.length]
        self.values = self.value_buffer[:, :, :self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.size(-2)
        if end > self.capacity:  # more tokens than planned for: grow (never happens in `rollout.sample`)
            self.capacity = max(end, 2 * self.capacity)
            grow = lambda buffer: torch.cat([buffer, buffer.new_empty(*buffer.shape[:2], self.capacity - buffer.size(2),  # noqa: E731
                                                                      buffer.size(3))], dim=2)
            self.key_buffer, self.value_buffer = grow(self.key_buffer), grow(self.value_buffer)
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0 or not self.is_initialized:
            raise ValueError("PreallocatedLayer.crop takes a negative number of tokens to remove")
        self.length = max(0, self.length + tokens_to_remove)
        self._expose()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self._expose()


def generation_cache(model, capacity: int) -> DynamicCache:
    """The cache `rollout.sample` decodes with: the model's own DynamicCache layout (sliding-window
    and other special layers kept as they are), its plain full-attention layers preallocated."""
    cache = DynamicCache(config=getattr(model, "config", None))
    if cache.layers:
        cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    else:  # no config to read the layout from: layers are made as the model first reaches them
        cache.layer_class_to_replicate = lambda: PreallocatedLayer(capacity)
    return cache
