"""Rate limiting: Redis-backed (exact across replicas) or in-memory (embedded default)."""
