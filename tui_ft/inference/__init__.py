"""Generation from any model reference: base, adapter, checkpoint."""
