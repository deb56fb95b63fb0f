"""Calendar months as integer indices, and the calendar-year grouping of a month grid."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def parse_month(text: str) -> int:
    """Parse ``"YYYY-MM"`` into an absolute month number ``12*year + (month-1)``.

    Raises ``ValueError`` with the reason when the text is not a valid month.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a string \"YYYY-MM\", got {type(text).__name__}")
    m = _MONTH_RE.match(text)
    if m is None:
        raise ValueError("expected \"YYYY-MM\"")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        raise ValueError("month must be 01..12")
    return 12 * year + (month - 1)


def format_month(absolute: int) -> str:
    """Inverse of :func:`parse_month`."""
    return f"{absolute // 12:04d}-{absolute % 12 + 1:02d}"


@dataclass(frozen=True)
class MonthGrid:
    """The simulated months ``start .. horizon`` inclusive.

    ``t = 0 .. num_months-1``; ``s_t = t/12`` years since start.
    """

    start: int  # absolute month number of t = 0
    num_months: int

    @classmethod
    def from_labels(cls, start: str, horizon: str) -> MonthGrid:
        a, b = parse_month(start), parse_month(horizon)
        return cls(a, b - a + 1)

    def label(self, t: int) -> str:
        return format_month(self.start + t)

    @property
    def labels(self) -> list[str]:
        return [self.label(t) for t in range(self.num_months)]

    def index(self, month: str) -> int:
        """Month index t of ``"YYYY-MM"`` (may be outside 0..T-1)."""
        return parse_month(month) - self.start

    @property
    def years(self) -> list[int]:
        first, last = self.start // 12, (self.start + self.num_months - 1) // 12
        return list(range(first, last + 1))

    def year_of_month(self) -> np.ndarray:
        """int array [T]: index into :attr:`years` of each month."""
        absolute = self.start + np.arange(self.num_months)
        return absolute // 12 - self.start // 12

    def year_labels(self) -> list[str]:
        """Calendar-year labels; partial first/last years say which months they hold."""
        labels = []
        year_idx = self.year_of_month()
        for k, year in enumerate(self.years):
            months = np.flatnonzero(year_idx == k)
            m0 = (self.start + months[0]) % 12
            m1 = (self.start + months[-1]) % 12
            if m0 == 0 and m1 == 11:
                labels.append(str(year))
            else:
                labels.append(f"{year} ({_MONTH_NAMES[m0]}-{_MONTH_NAMES[m1]}, partial)")
        return labels

    def year_is_partial(self) -> list[bool]:
        return [lab.endswith("partial)") for lab in self.year_labels()]
