"""Metrics contract, claims ledger, notebook runner and offline HTML reports."""

from musicrecall.report.claims import CLAIMS, Claim
from musicrecall.report.record import headline, lift_table_metrics, metric, record_claim, record_metrics

__all__ = ["CLAIMS", "Claim", "headline", "lift_table_metrics", "metric", "record_claim", "record_metrics"]
