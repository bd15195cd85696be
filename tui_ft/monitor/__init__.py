"""System and GPU sampling into plain snapshots; "no GPU" is a value, not an error."""
