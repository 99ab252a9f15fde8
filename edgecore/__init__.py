"""Utilities shared by the gateway, the plugin host and the backend: the metrics registry and its
batching, command-line progress."""
