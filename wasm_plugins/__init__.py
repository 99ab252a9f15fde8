"""Sandboxed proxy-wasm plugins for the gateway, hosted on wasmtime."""
