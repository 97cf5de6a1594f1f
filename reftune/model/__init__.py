"""The model: load a policy (hub id, folder, the packaged SmolLM2, tiny) and its tokenizer, LoRA, the value
and verifier heads, the forward pass over responses, CPU kernels. The only folder that names HF model classes."""
