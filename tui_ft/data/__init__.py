"""Dataset formats, loading, checks."""
