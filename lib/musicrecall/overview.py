"""Descriptive tables of a dataset for notebook 00 (all plain polars group-bys)."""

from __future__ import annotations

import polars as pl


def catalog_summary(items: pl.DataFrame) -> pl.DataFrame:
    """Songs, artists, albums, genres and languages in the catalogue."""
    return pl.DataFrame({
        "what": ["songs", "artists", "albums", "genres", "languages", "versions"],
        "count": [items.height, items["artist"].n_unique(), items["album"].n_unique(),
                  items["genre"].n_unique(), items["language"].n_unique(), items["version"].n_unique()],
    })


def share_by(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """Count and share of rows per value of ``column`` (nulls shown as ``missing``)."""
    return (frame.group_by(pl.col(column).cast(pl.String).fill_null("missing")).len("rows")
            .with_columns(share=pl.col("rows") / frame.height).sort("rows", descending=True))


def missing_share(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Share of nulls per column (sparse demographics)."""
    return pl.DataFrame({"column": columns, "missing": [frame[c].null_count() / max(frame.height, 1) for c in columns]})


def kg_summary(triples: pl.DataFrame) -> pl.DataFrame:
    """Triples and distinct tails per relation of the knowledge graph."""
    return (triples.group_by("relation").agg(triples=pl.len(), distinct_tails=pl.col("tail").n_unique())
            .sort("relation"))


def noise_summary(truth_noise: pl.DataFrame) -> pl.DataFrame:
    """Ground-truth noise kinds in the raw log (``genuine`` for clean plays)."""
    return share_by(truth_noise.with_columns(pl.col("noise").fill_null("genuine")), "noise")


def interests_per_user(user_interests: pl.DataFrame) -> pl.DataFrame:
    """How many latent interests users have (ground truth)."""
    per_user = user_interests.group_by("user_id").len("interests")
    return share_by(per_user, "interests").sort("interests")
