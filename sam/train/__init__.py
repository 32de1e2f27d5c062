"""Training a tiny SAM: synthetic scenes, the paper's losses and simulated prompting."""
