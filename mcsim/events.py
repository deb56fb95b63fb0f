"""First-passage events: the months a path first reaches something, one row each.

Every layer iterates :func:`table`: the kernel stacks the events' months as one
``[E, n]`` array (:attr:`mcsim.engine.kernel.PathStatistics.event_months`), the chunk
reduction counts them as one ``[E, T+1]`` array (month ``T``: not by the horizon), and the
host merge, checkpoints, :class:`~mcsim.results.Results`, frames, CSVs, ``summary.json``,
the terminal text, ``report.html`` and the plots read the rows by name. **Adding an event is
one row here** (plus its test of the model): a month the model already tracks in its state
(``month_field``), or a condition on the state after a month (``reached``), whose first
true month the month loop records.

A leaf module (no JAX, no config): ``reached`` and ``shown`` are applied to whatever they are
given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _always(deal: Any) -> bool:
    return True


def _has_cap(deal: Any) -> bool:
    return any(c is not None for c in deal.term_values("revenue_share_cap"))


def _has_commitment(deal: Any) -> bool:
    return deal.azure_commitment is not None


@dataclass(frozen=True)
class Event:
    """One first-passage month and how every output names it."""

    #: the key of :meth:`Results.event`, of frames and of ``{name}_cdf.png``
    name: str
    #: its block in ``summary.json``
    summary_key: str
    #: its column in ``repayment_cdf.csv``: P(reached by the month), with ``_se`` beside it
    probability_column: str
    #: the terminal's and the report's line, e.g. "Microsoft repaid"
    label: str
    #: the survival curve's legend, e.g. "not yet repaid"
    not_yet: str
    #: the survival chart's title, e.g. "Microsoft not yet repaid"
    survival_title: str
    #: the report's caption of its chart
    caption: str
    #: what reaches it, for summary.json's schema
    reaches: str
    color: str = "tab:gray"
    #: a field of :class:`mcsim.model.State` holding its first month (the horizon's month
    #: count while not reached), when the model tracks it ...
    month_field: str | None = None
    #: ... or ``reached(state, flows, deal) -> bool [n]`` after each month: the loop keeps
    #: the first month it is true (``state``: the running sums through that month)
    reached: Callable | None = None
    #: whether the terminal and the plots show it for a deal (summary and CSVs always do)
    shown: Callable[[Any], bool] = _always
    #: the version-3 mechanism it belongs to (:data:`mcsim.layout.V3_MECHANISMS`): a run
    #: whose config does not use it has no such event at all (None: every run has it)
    needs: str | None = None

    def __post_init__(self):
        if (self.month_field is None) == (self.reached is None):
            raise ValueError(f"event {self.name!r}: give exactly one of month_field, reached")


#: the events of version 2 (MODEL.md "What every run reports", 3 and 4; version 2, C)
EVENTS: tuple[Event, ...] = (
    Event("repayment", "repayment", "p_repaid_by", "Microsoft repaid", "not yet repaid",
          "Microsoft not yet repaid", "When Microsoft is repaid",
          "the first month whose recouped sum (deal.recoup_from) reaches the investment",
          color="tab:green", month_field="repayment_month"),
    Event("credit_exhaustion", "credit_exhaustion", "p_credits_exhausted_by",
          "Azure credits exhausted", "credits not yet exhausted",
          "Azure credits not yet exhausted", "When the Azure credits run out",
          "the first month whose cumulative Azure spend reaches deal.azure_credits "
          "(never: no credits)", color="tab:purple", month_field="credit_month"),
    Event("cap_reached", "revenue_share_cap_reached", "p_cap_reached_by",
          "Revenue-share cap reached", "cap not yet reached",
          "Revenue-share cap not yet reached", "When the revenue-share cap is reached",
          "the first month whose revenue share reaches the cap in force (never: no cap, "
          "or not reached)", color="tab:brown", month_field="cap_month", shown=_has_cap),
    Event("commitment_met", "azure_commitment_met", "p_commitment_met_by",
          "Azure commitment met by spend", "commitment not yet met",
          "Azure commitment not yet met by spend", "When Azure spend meets the commitment",
          "the first month in the commitment's window whose Azure spend, summed over the "
          "window, reaches the commitment (never: no commitment, or a shortfall paid "
          "instead)", color="tab:olive", month_field="commit_month",
          shown=_has_commitment),
    # version 3 (MODEL.md "Version 3 additions", E)
    Event("funding_gap", "funding_gap", "p_funding_gap_by", "OpenAI's cash runs out",
          "cash not yet run out", "OpenAI's cash not yet run out",
          "When OpenAI's cash runs out (the funding gap; spending goes on regardless)",
          "the first month whose cash (funding.cash_0 + rounds + cumulative profit after "
          "Microsoft's profit share) is below $0; a path keeps spending after it: the "
          "model reports what it would take, not what would happen",
          color="tab:red", month_field="funding_gap_month", needs="funding"),
)


def table(v3: frozenset | None = frozenset()) -> tuple[Event, ...]:
    """The events in force for a run using the version-3 mechanisms ``v3`` (None: every
    row), read at call time, so a test or an extension that adds a row to :data:`EVENTS`
    is seen by every layer."""
    return tuple(e for e in EVENTS if v3 is None or e.needs is None or e.needs in v3)


def names(events: tuple[Event, ...] | None = None) -> tuple[str, ...]:
    return tuple(e.name for e in (table(None) if events is None else events))


def by_name(name: str, events: tuple[Event, ...] | None = None) -> Event:
    for e in table(None) if events is None else events:
        if e.name == name:
            return e
    raise KeyError(name)


def event_output_names(event: str) -> tuple[str, str]:
    """(month output, "by" output) of an event in a sensitivity study: ``repayment`` ->
    (``repayment_month``, ``repaid_by``), any other ``e`` -> (``e_month``, ``e_by``)."""
    if event == "repayment":
        return "repayment_month", "repaid_by"
    return f"{event}_month", f"{event}_by"


__all__ = ["EVENTS", "Event", "by_name", "event_output_names", "names", "table"]
