"""Simulation stage: Sotopia tasks, prompts, chat models, episodes and the passive reader."""
