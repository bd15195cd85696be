"""Dataset formats, sources, validation, training data, checks."""

# The files the Datasets screen lists and a folder is read as (`sources.open_dataset`). Here, not in
# `sources`, so the file tree can filter without importing the readers (json, csv, ...).
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
