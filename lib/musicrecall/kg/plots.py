"""Figures of notebook 02 (seaborn on matplotlib; each function returns its Figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def tuning_bars(tuning: pl.DataFrame) -> plt.Figure:
    """Validation HitRate@50 and @200 of each plain Song2Vec grid variant."""
    long = tuning.unpivot(index="variant", on=["hr@50", "hr@200"], variable_name="metric", value_name="hit rate")
    fig, ax = plt.subplots(figsize=(8, 0.45 * tuning.height + 1.5))
    sns.barplot(long.to_pandas(), y="variant", x="hit rate", hue="metric", ax=ax)
    ax.set_title("plain Song2Vec tuning (validation window, item-to-item recall)")
    fig.tight_layout()
    return fig


def gamma_sweep_plot(sweep: pl.DataFrame, badcase_cols: list[str]) -> plt.Figure:
    """HitRate@50/@200 (left) and BadCase rates (right) against gamma."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    s = sweep.to_pandas()
    for col in ("hr@50", "hr@200"):
        axes[0].plot(s["gamma"], s[col], "o-", label=col)
    axes[0].set(xscale="symlog", xlabel="gamma", ylabel="hit rate (validation)", title="accuracy vs gamma")
    axes[0].legend()
    for col in badcase_cols:
        axes[1].plot(s["gamma"], s[col], "o-", label=col)
    axes[1].set(xscale="symlog", xlabel="gamma", ylabel="share of top-10 neighbours", title="BadCase vs gamma")
    axes[1].legend()
    fig.tight_layout()
    return fig


def slices_plot(slices: pl.DataFrame, metric: str = "hr@200") -> plt.Figure:
    """HitRate per song slice (head / long tail / cold) and model, with 95% CIs."""
    d = slices.filter(pl.col("metric") == metric)
    groups, models = d["slice"].unique(maintain_order=True).to_list(), d["model"].unique(maintain_order=True).to_list()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(models)
    for j, model in enumerate(models):
        m = d.filter(pl.col("model") == model)
        x = [groups.index(g) + (j - (len(models) - 1) / 2) * width for g in m["slice"].to_list()]
        mean, lo, hi = m["mean"].to_numpy(), m["ci_lo"].to_numpy(), m["ci_hi"].to_numpy()
        ax.bar(x, mean, width=width, label=model, color=f"C{j}")
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="none", color="k", capsize=2)
    ax.set_xticks(range(len(groups)), groups)
    ax.set(ylabel=metric, title=f"{metric} on targets of each song slice (test window)")
    ax.legend()
    fig.tight_layout()
    return fig


def slot_share_plot(slots: pl.DataFrame) -> plt.Figure:
    """Share of all i2i neighbour slots taken by songs of each training play-count bin, per model."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    sns.barplot(slots.to_pandas(), x="plays", y="slot_share", hue="model", ax=ax)
    ax.set(xlabel="training full plays of the listed song", ylabel="share of neighbour slots",
           title="Where the item-to-item neighbour slots go")
    fig.tight_layout()
    return fig
