"""Picking a dataset: a path input that completes file names, and a tree of data files."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from textual.suggester import Suggester
from textual.widgets import DirectoryTree, Static

from tui_ft.data import DATA_SUFFIXES
from tui_ft.ui.widgets.shell import fit_left


def complete_path(value: str, base_dirs: list[Path]) -> str | None:
    """`value` extended to the first entry it is a prefix of (directories end with `/`), or None.

    A relative value completes against each of `base_dirs` in turn; the completion keeps the text as
    typed, so `da` becomes `data/` and `~/tr` becomes `~/train.jsonl`.
    """
    if not value or value.endswith(("/.", "/..")):
        return None
    typed_dir, _, prefix = value.rpartition("/")
    folder = Path(typed_dir or ("/" if value.startswith("/") else ".")).expanduser()
    if value.startswith("/") and not typed_dir:
        folder = Path("/")
    candidates = [folder] if folder.is_absolute() else [base / folder for base in base_dirs]
    for directory in candidates:
        try:
            names = sorted(entry.name for entry in directory.iterdir() if not entry.name.startswith("."))
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and name != prefix:
                suffix = "/" if (directory / name).is_dir() else ""
                head = f"{typed_dir}/" if typed_dir or value.startswith("/") else ""
                return f"{head}{name}{suffix}"
    return None


class PathSuggester(Suggester):
    """Suggests file and directory names for a path input (listing a directory off the event loop)."""

    def __init__(self, base_dirs: list[Path]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.base_dirs = base_dirs

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value, self.base_dirs)


class DataTree(DirectoryTree):
    """A directory tree that lists folders and data files only."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [
            p
            for p in paths
            if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in DATA_SUFFIXES)
        ]


class FolderLabel(Static):
    """ "files in FOLDER" over the tree: the folder's path cut from the left to the width it has, so
    its own name (the end) is what always shows; the whole path on hover."""

    def __init__(self, folder: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.folder = folder
        self.tooltip = folder

    def render(self) -> str:
        prefix = "files in "
        width = self.content_region.width or self.size.width
        if not width:
            return prefix + self.folder
        if len(prefix) + min(len(self.folder), 12) > width:
            prefix = ""
        return prefix + fit_left(self.folder, width - len(prefix))
