"""Synchrony stage: condition datasets, the all-layer-pairs ridge engine, R2 tables and SyncR2."""
