"""Descriptive tables of a dataset for notebook 00 (all plain polars group-bys)."""

from __future__ import annotations

import polars as pl


def catalog_summary(items: pl.DataFrame) -> pl.DataFrame:
    """Songs, artists, albums, genres, languages and versions in the catalogue, and the share of songs that
    have each attribute (a real catalogue often has only some of them: 0 means unknown, not one value)."""
    cols = ["artist", "album", "genre", "language", "version"]
    present = [c for c in cols if c in items.columns]
    return pl.DataFrame({
        "what": ["songs", *[f"{c}s" for c in present]],
        "count": [items.height, *[items[c].drop_nulls().n_unique() for c in present]],
        "songs_with_it": [1.0, *[1.0 - items[c].null_count() / max(items.height, 1) for c in present]],
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
