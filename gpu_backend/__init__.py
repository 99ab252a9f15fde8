"""An OpenAI-compatible torch + transformers model server with continuous batching."""
