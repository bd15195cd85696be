"""Where tui-ft keeps its state: $TUI_FT_HOME, else the platform's user data directory.

Layout: runs/<run-id>/, models/<name>/, data/ (sample and user datasets), annotations/, cache/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "TUI_FT_HOME"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def default(cls) -> Workspace:
        """The workspace named by $TUI_FT_HOME, or the user data directory."""
        env = os.environ.get(ENV_VAR)
        if env:
            return cls(Path(env).expanduser().resolve())
        import platformdirs

        return cls(Path(platformdirs.user_data_dir("tui-ft", appauthor=False)))

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def ensure(self) -> Workspace:
        """Create the workspace folders if they are missing."""
        for path in (self.runs, self.models, self.data, self.annotations, self.cache):
            path.mkdir(parents=True, exist_ok=True)
        return self
