"""Dataset formats, sources, validation, training data, checks."""
