"""Analysis stage: SyncR2 against social performance, relationship closeness."""
