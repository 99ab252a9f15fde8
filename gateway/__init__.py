"""edgegw: an edge API gateway for pooled inference backends, extended by sandboxed wasm plugins."""

__version__ = "0.1.0"
