"""A speed-up with its interval: shared by the run model's benchmarks and the Ship decision (which the run model
holds, so it cannot import the run model)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Ratio(BaseModel):
    """A speed-up with its 95% interval (a paired bootstrap over the interleaved blocks): ``value`` = baseline
    median / contender median."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def distinguishable(self) -> bool | None:
        """Whether the interval excludes 1 and the 2% band around it (None without an interval)."""
        if self.low is None or self.high is None:
            return None
        from workbench.timing.stats import MARGIN

        return self.low > 1 + MARGIN or self.high < 1 - MARGIN

    def __str__(self) -> str:
        interval = f" [{self.low:.2f}-{self.high:.2f}]" if self.low is not None and self.high is not None else ""
        return f"{self.value:.2f}x{interval}"
