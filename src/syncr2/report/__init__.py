"""Report stage: the paper's figures and tables."""
