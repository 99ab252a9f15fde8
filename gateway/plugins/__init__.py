"""The gateway's side of the wasm plugin host (wasm_plugins/): its embedder, the pipeline stage,
the admin API, the replies plugins produce and the `plugins:` policy parser."""
