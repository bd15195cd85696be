"""Preference annotations: the append-only store that Chat's compare and the Annotate screen write."""
