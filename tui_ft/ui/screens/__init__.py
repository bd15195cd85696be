"""Top-level screens, one per mode."""
