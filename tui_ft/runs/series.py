"""A metric's history as a series, and min/max downsampling of it for drawing.

`Series` keeps the full history (steps, values, wall times); `downsample(width)` reduces it for a chart
`width` columns wide without losing its extremes, incrementally, so a refresh costs in proportion to what
was appended, not to the run's length. No textual, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class Series:
    """One metric's full history: parallel lists of steps, values and wall times, in arrival order.

    `generation` changes when points are removed (a resume superseded them), so caches built on the
    old points know to start over; `len()` growing is the only other change.
    """

    __slots__ = ("name", "steps", "values", "times", "generation", "_samplers")

    def __init__(self, name: str):
        self.name = name
        self.steps: list[int | None] = []
        self.values: list[float] = []
        self.times: list[float] = []
        self.generation = 0
        self._samplers: dict[int, _Downsampler] = {}

    def __len__(self) -> int:
        return len(self.values)

    def append(self, step: int | None, value: float, t: float) -> None:
        self.steps.append(step)
        self.values.append(value)
        self.times.append(t)

    def drop_after(self, step: int) -> int:
        """Remove the trailing points logged after `step`; how many were removed."""
        n = len(self.steps)
        keep = n
        while keep > 0 and (self.steps[keep - 1] or 0) > step:
            keep -= 1
        if keep < n:
            del self.steps[keep:], self.values[keep:], self.times[keep:]
            self.generation += 1
        return n - keep

    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def points(self) -> SeriesPoints:
        """A copy of every point (the full history)."""
        return SeriesPoints(self.name, tuple(self.steps), tuple(self.values), tuple(self.times))

    def downsample(self, width: int) -> SeriesPoints:
        """At most `2 * width + 2` points keeping each bucket's extremes (see `_Downsampler`)."""
        sampler = self._samplers.get(width)
        if sampler is None:
            sampler = self._samplers[width] = _Downsampler(width)
        return sampler.update(self)


@dataclass(frozen=True)
class SeriesPoints:
    """An immutable set of points of one series, ready to draw (x = steps or times)."""

    name: str
    steps: tuple[int | None, ...]
    values: tuple[float, ...]
    times: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.values)


class _Downsampler:
    """Min/max bucket downsampling of one series for one width, updated incrementally.

    The points are cut into buckets of `size` consecutive points, `size` a power of two chosen so there
    are at most `width` buckets; when a series outgrows that, neighbouring buckets merge (size doubles).
    Each bucket remembers the index of its smallest and largest value and of its first NaN (infinities
    order as numbers). A bucket contributes its min and max, in order (a bucket with a NaN: the NaN and
    its max, the spike that usually comes with it), and the
    first and last points of the series are always kept. Appending k points costs O(k) (plus O(width)
    when buckets merge); removing points (a resume) rebuilds once, in O(n).
    """

    __slots__ = ("width", "size", "full", "partial", "covered", "generation", "_cache")

    def __init__(self, width: int):
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        self.width = width
        self._reset(-1)

    def _reset(self, generation: int) -> None:
        self.size = 1
        self.full: list[tuple[int, int, int]] = []  # (min index, max index, first non-finite or -1)
        self.partial: tuple[int, int, int] | None = None
        self.covered = 0  # points folded into full + partial
        self.generation = generation
        self._cache: tuple[int, SeriesPoints] | None = None

    @staticmethod
    def _merge(values: list[float], a: tuple[int, int, int] | None, b: tuple[int, int, int]):
        """The aggregate of two neighbouring buckets (a before b)."""
        if a is None:
            return b
        lo = a[0] if a[0] >= 0 and (b[0] < 0 or values[a[0]] <= values[b[0]]) else b[0]
        hi = a[1] if a[1] >= 0 and (b[1] < 0 or values[a[1]] >= values[b[1]]) else b[1]
        return (lo, hi, a[2] if a[2] >= 0 else b[2])

    @staticmethod
    def _point(values: list[float], i: int) -> tuple[int, int, int]:
        # inf orders like any number (a spike); only NaN cannot be compared and is kept as a marker
        return (-1, -1, i) if math.isnan(values[i]) else (i, i, -1)

    def update(self, series: Series) -> SeriesPoints:
        values = series.values
        n = len(values)
        if series.generation != self.generation or n < self.covered:
            self._reset(series.generation)
        if self._cache is not None and self._cache[0] == n:
            return self._cache[1]
        merge, point = self._merge, self._point
        for i in range(self.covered, n):
            self.partial = merge(values, self.partial, point(values, i))
            self.covered = i + 1
            if self.covered % self.size == 0:
                self.full.append(self.partial)
                self.partial = None
                if len(self.full) + 1 > self.width:
                    self._coarsen(values)
        result = self._emit(series, n)
        self._cache = (n, result)
        return result

    def _coarsen(self, values: list[float]) -> None:
        """Double the bucket size: merge pairs of full buckets; an odd one out starts the partial."""
        full = self.full
        merged = [self._merge(values, full[i], full[i + 1]) for i in range(0, len(full) - 1, 2)]
        odd = full[-1] if len(full) % 2 else None
        self.size *= 2
        self.full = merged
        if odd is not None:
            self.partial = odd if self.partial is None else self._merge(values, odd, self.partial)

    def _emit(self, series: Series, n: int) -> SeriesPoints:
        if n <= 2 * self.width + 2:
            return series.points() if n else SeriesPoints(series.name, (), (), ())
        indices = {0, n - 1}
        buckets = self.full + ([self.partial] if self.partial is not None else [])
        for lo, hi, bad in buckets:
            if bad >= 0:
                indices.add(bad)
                if hi >= 0:
                    indices.add(hi)
            else:
                indices.add(lo)
                indices.add(hi)
        order = sorted(indices)
        return SeriesPoints(
            series.name,
            tuple(series.steps[i] for i in order),
            tuple(series.values[i] for i in order),
            tuple(series.times[i] for i in order),
        )
