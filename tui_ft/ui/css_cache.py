"""Textual's parsed CSS, kept in the workspace's cache between starts of tui-ft.

Textual parses every widget class's CSS the first time one is mounted, in every process: for the
Datasets screen, 28 sources and 180 rules, a sixth of tui-ft's own share of the time to the first frame
(`bench/ui_startup.py`). The rules a parse gives depend only on the CSS text, where it was read from,
its scope and the theme's variables, so they are kept: one file per build of Textual and set of
variables, holding each source's rules (pickled as the parse made them). A source whose text changed
has another key and is parsed again; a file that cannot be read is parsed around and written anew.
The file holds what tui-ft itself wrote in the user's own cache folder, as Python's `.pyc` files do.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
from pathlib import Path
from typing import Any

try:  # hashlib's blake2b without loading OpenSSL (hashlib's import), which would cost more than it saves
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

import textual.css.model
import textual.css.parse
from textual.css.model import RuleSet
from textual.css.stylesheet import CSSLocation, Stylesheet

FORMAT = 1  # of the file; a new one starts a new file


@functools.cache
def _textual_build() -> str:
    """Which Textual parsed the rules: its parser's and rule model's files (size and time). Not
    `textual.__version__`, which reads the package's metadata: a fifth of what the cache saves."""
    parts = []
    for module in (textual.css.parse, textual.css.model):
        stat = os.stat(module.__file__ or "")
        parts.append(f"{stat.st_size}.{stat.st_mtime_ns}")
    return blake2b("-".join(parts).encode(), digest_size=6).hexdigest()


class KeptStylesheet(Stylesheet):
    """A `Stylesheet` that reads a source's parsed rules from `folder` instead of parsing it again, and
    writes the rules it did parse there (`save`). `folder` None: Textual's own behaviour."""

    def __init__(self, *, variables: dict[str, str], folder: Path | None) -> None:
        super().__init__(variables=variables)
        self.folder = folder
        self._kept: dict[tuple, bytes] | None = None  # read on the first parse
        self._added = False  # rules parsed here that the file does not hold yet

    def set_variables(self, variables: dict[str, str]) -> None:
        super().set_variables(variables)
        self._kept, self._added = None, False  # another theme: another file

    @property
    def path(self) -> Path | None:
        """The file for this Textual and these variables."""
        if self.folder is None:
            return None
        digest = blake2b(repr(sorted(self._variables.items())).encode(), digest_size=8).hexdigest()
        return self.folder / f"css-{FORMAT}-textual-{_textual_build()}-{digest}.pickle"

    def _read(self) -> dict[tuple, bytes]:
        path = self.path
        if path is None:
            return {}
        try:
            with path.open("rb") as f:
                kept = pickle.load(f)
        except FileNotFoundError:
            return {}
        except Exception:  # noqa: BLE001 - cut short, from another Python, not ours: parse as if absent
            self._added = True  # written anew with what this process parses
            return {}
        return kept if isinstance(kept, dict) else {}

    def _parse_rules(
        self,
        css: str,
        read_from: CSSLocation,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> list[RuleSet]:
        cache_key = (css, read_from, is_default_rules, tie_breaker, scope)
        if cache_key in self._parse_cache or self.folder is None:  # parsed in this process already
            return super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
        if self._kept is None:
            self._kept = self._read()
        key = (
            blake2b(css.encode(), digest_size=16).digest(),
            read_from,
            is_default_rules,
            tie_breaker,
            scope,
        )
        data = self._kept.get(key)
        if data is not None:
            try:
                rules: Any = pickle.loads(data)
            except Exception:  # noqa: BLE001 - an entry that does not load: parsed again below
                rules = None
            if isinstance(rules, list):
                self._parse_cache[cache_key] = rules
                return rules
        rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
        self._kept[key] = pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL)  # as parsed, before any use
        self._added = True
        return rules

    def save(self) -> None:
        """Write the rules parsed since the file was read (whole, or not at all: a new file moved into
        place). A folder that cannot be written to leaves things as they are."""
        path = self.path
        if not self._added or self._kept is None or path is None:
            return
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            with partial.open("wb") as f:
                pickle.dump(self._kept, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(partial, path)
            self._added = False
