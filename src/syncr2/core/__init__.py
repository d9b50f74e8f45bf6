"""Core: what every stage shares (atomic writes, config checks, conditions, representation shards)."""
