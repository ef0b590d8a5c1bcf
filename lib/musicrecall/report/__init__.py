"""Metrics contract, claims ledger and verdicts, notebook runner and offline HTML reports."""

from musicrecall.report.cells import fmt_ci, pick_ci
from musicrecall.report.claims import CLAIMS, Claim
from musicrecall.report.record import headline, lift_table_metrics, metric, record_claim, record_metrics

__all__ = ["CLAIMS", "Claim", "fmt_ci", "headline", "lift_table_metrics", "metric", "pick_ci", "record_claim",
           "record_metrics"]
