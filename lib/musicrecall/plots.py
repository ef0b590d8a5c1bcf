"""Figures shared by the notebooks (seaborn on matplotlib; every function returns its Figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def olap_overview(per_day: pl.DataFrame | None, entries: pl.DataFrame | None, long_tail: pl.DataFrame,
                  repeats: pl.DataFrame, hours: pl.DataFrame | None = None) -> plt.Figure:
    """Plays per day, entry mix with skip rate, popularity long tail, repeat ratio (and hour of day).

    A panel whose data the log lacks (``None``: no clock, no entry points) is left out; without a clock the
    repeat ratio is one bar for the whole log."""
    panels = [p for p, frame in (("day", per_day), ("entry", entries), ("tail", long_tail), ("repeat", repeats),
                                 ("hour", hours)) if frame is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    ax = dict(zip(panels, np.atleast_1d(axes), strict=True))
    if per_day is not None:
        sns.lineplot(per_day.to_pandas(), x="day", y="plays", ax=ax["day"])
        ax["day"].set_title("plays per day")
        ax["day"].tick_params(axis="x", rotation=45)
    if entries is not None:
        e = entries.to_pandas()
        sns.barplot(e, x="entry", y="share", ax=ax["entry"], color="C0")
        ax2 = ax["entry"].twinx()
        ax2.plot(range(len(e)), e["skip_rate"], "o-", color="C3")
        ax2.set_ylabel("skip rate", color="C3")
        ax2.set_ylim(0, 1)
        ax2.grid(False)
        ax["entry"].set_title("entry mix (bars) and skip rate (dots)")
        ax["entry"].tick_params(axis="x", rotation=60)
    lt = long_tail.to_pandas()
    ax["tail"].loglog(lt["rank"], lt["plays"])
    ax["tail"].set(title="popularity long tail", xlabel="song rank", ylabel="plays")
    if per_day is not None:
        sns.lineplot(repeats.to_pandas(), x="day", y="repeat_ratio", ax=ax["repeat"])
        ax["repeat"].set_title("repeat ratio per day")
        ax["repeat"].tick_params(axis="x", rotation=45)
    else:
        ax["repeat"].bar(["whole log"], [float(repeats["repeat_ratio"].mean())], color="C1")
        ax["repeat"].set(title="repeat ratio (no clock: whole log)", ylim=(0, 1))
    if hours is not None:
        sns.barplot(hours.to_pandas(), x="hour", y="plays", ax=ax["hour"], color="C2")
        ax["hour"].set_title("plays by hour (UTC)")
        ax["hour"].tick_params(axis="x", labelsize=7, rotation=90)
    fig.tight_layout()
    return fig


def accounting_bars(accounting: pl.DataFrame) -> plt.Figure:
    """Rows removed by each rule, on a log scale, coloured by stage."""
    removed = accounting.filter(~pl.col("reason").is_in(["rows_in", "kept"])).to_pandas()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(removed, x="reason", y="rows", hue="stage", ax=ax, dodge=False)
    ax.set_yscale("symlog")
    ax.set_title("rows removed by rule (rows in = kept + removed)")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def noise_precision_recall(report: pl.DataFrame) -> plt.Figure:
    """Precision and recall of each cleaning rule against the simulator's ground truth."""
    long = (report.filter(pl.col("truth") > 0).unpivot(index="rule", on=["precision", "recall"])
            .drop_nulls().to_pandas())
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(long, x="rule", y="value", hue="variable", ax=ax)
    ax.set(ylim=(0, 1.05), title="noise removal vs ground truth", ylabel="")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def metric_intervals(summary: pl.DataFrame, x: str = "mean", y: str = "label", title: str = "") -> plt.Figure:
    """Point estimates with 95% CI bars; ``summary`` has ``label``, ``mean``, ``ci_lo``, ``ci_hi``."""
    s = summary.to_pandas()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(s) + 1.2))
    ax.errorbar(s[x], np.arange(len(s)), xerr=[s[x] - s["ci_lo"], s["ci_hi"] - s[x]], fmt="o", capsize=3)
    ax.set_yticks(np.arange(len(s)), s[y])
    ax.invert_yaxis()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def spectrogram(wave: np.ndarray, sr: int, voiced: list[tuple[float, float]] | None = None,
                title: str = "") -> plt.Figure:
    """Log-magnitude spectrogram with the ground-truth voiced intervals shaded."""
    import librosa
    import librosa.display

    s_db = librosa.amplitude_to_db(np.abs(librosa.stft(wave, n_fft=1024, hop_length=256)), ref=np.max)
    fig, ax = plt.subplots(figsize=(10, 3.2))
    librosa.display.specshow(s_db, sr=sr, hop_length=256, x_axis="time", y_axis="log", ax=ax)
    for start, end in voiced or []:
        ax.axvspan(start, end, color="white", alpha=0.15)
    ax.set_title(title)
    fig.tight_layout()
    return fig
