"""Social stage: the Sotopia-eval judge (prompts, backends, reply parsing) and social performance."""
