"""The Textual UI. The only package that imports textual; nothing but cli.py imports it."""
