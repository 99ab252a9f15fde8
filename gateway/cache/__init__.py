"""Response cache: Redis-backed or in-memory (embedded default)."""
