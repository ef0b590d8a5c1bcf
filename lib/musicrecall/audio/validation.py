"""Checks of the audio attributes on labelled audio, bad-file fixtures, and the audio figures.

The labelled audio is an :class:`~musicrecall.audio.sources.AudioSet`: the shared real fixtures (sung
lyric lines) or rendered songs of the simulated world (their vocal sections).

* :func:`vocal_labels`: a segment is vocal when sung lyric lines cover at least half of it, non-vocal
  when no line overlaps it, and ambiguous (left out) otherwise.
* :func:`auc`: ROC AUC by the rank-sum (Mann-Whitney U) formula, ties counted half.
* :func:`vocal_auc_table`, :func:`instrumental_ranking`, :func:`nn_style_check`: the three checks of
  notebook 05 on an embedded audio set.
* :func:`port_check`: the torch musicnn port against outputs of the reference implementation
  (musicnn 0.1.0 on TensorFlow 2.15.1, produced by ``reference/make_reference.py`` in a scratch
  environment) stored in ``reference/musicnn_mtt_reference.npz``.
* :func:`make_bad_files`: truncated, corrupt, silent, too short and odd-sample-rate files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import scipy.stats

REFERENCE = Path(__file__).parent / "reference" / "musicnn_mtt_reference.npz"


def read_lines(csv_path: str | Path) -> np.ndarray:
    """``(n, 2)`` start/end seconds of the sung lines of a ``*.lines.csv``."""
    df = pl.read_csv(csv_path)
    return df.select("start_time", "end_time").to_numpy().astype(np.float64)


def vocal_labels(starts: np.ndarray, segment_s: float, lines: np.ndarray) -> np.ndarray:
    """1 vocal (>= 50% covered by lines), 0 non-vocal (no overlap), -1 ambiguous, per segment."""
    a, b = np.asarray(starts)[:, None], np.asarray(starts)[:, None] + segment_s
    overlap = np.clip(np.minimum(b, lines[None, :, 1]) - np.maximum(a, lines[None, :, 0]), 0.0, None).sum(axis=1)
    cover = overlap / segment_s
    return np.where(cover >= 0.5, 1, np.where(cover <= 0.0, 0, -1))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (rank-sum; NaN when a class is missing)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = scipy.stats.rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def port_check(model=None) -> dict[str, float]:
    """Max absolute differences of tag probabilities and penultimate features vs the reference."""
    import torch

    from musicrecall.models.musicnn import MusiCNN

    model = model or MusiCNN.from_checkpoint()
    ref = np.load(REFERENCE)
    with torch.inference_mode():
        logits, pen = model(torch.from_numpy(ref["mel"].astype(np.float32)))
    tags = torch.sigmoid(logits).numpy()
    return {"patches": int(len(tags)), "max_abs_tag_diff": float(np.abs(tags - ref["tags"]).max()),
            "max_abs_penultimate_diff": float(np.abs(pen.numpy() - ref["penultimate"]).max()),
            "tag_corr": float(np.corrcoef(tags.ravel(), ref["tags"].ravel())[0, 1])}


def make_bad_files(folder: str | Path, source: np.ndarray, sr: int = 22_050) -> dict[str, Path]:
    """Write one file per bad case (and one good file per codec) from ``source`` audio; returns
    ``{case: path}``. Cases: truncated ogg, corrupt mp3 (random bytes), silent wav, 2 s wav, a wav at
    7 777 Hz, plus valid wav / ogg / mp3 / opus copies."""
    import librosa
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(source, dtype=np.float32)[: 10 * sr]
    paths = {"good_wav": folder / "good.wav", "good_ogg": folder / "good.ogg", "good_mp3": folder / "good.mp3",
             "good_opus": folder / "good.opus", "truncated": folder / "truncated.wav",
             "corrupt": folder / "corrupt.mp3", "silent": folder / "silent.wav", "too_short": folder / "short.wav",
             "odd_sample_rate": folder / "odd_rate.wav"}
    sf.write(paths["good_wav"], y, sr)
    sf.write(paths["good_ogg"], y, sr, format="OGG", subtype="VORBIS")
    sf.write(paths["good_mp3"], y, sr, format="MP3", subtype="MPEG_LAYER_III")
    y48 = librosa.resample(y, orig_sr=sr, target_sr=48_000)
    sf.write(paths["good_opus"], y48, 48_000, format="OGG", subtype="OPUS")
    # a wav whose header announces more frames than the file holds (an interrupted copy)
    full = folder / "_full.wav"
    sf.write(full, y, sr, subtype="PCM_16")
    data = full.read_bytes()
    paths["truncated"] = folder / "truncated.wav"
    paths["truncated"].write_bytes(data[: len(data) // 2])
    full.unlink()
    paths["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    sf.write(paths["silent"], np.zeros(5 * sr, dtype=np.float32), sr)
    sf.write(paths["too_short"], y[: 2 * sr], sr)
    sf.write(paths["odd_sample_rate"], librosa.resample(y, orig_sr=sr, target_sr=7_777), 7_777)
    return paths


def vocal_auc_table(corpus, aset, segment_s: float) -> tuple[pl.DataFrame, float, np.ndarray, np.ndarray]:
    """Per song: labelled segment counts and the AUC of the vocal and pure-vocal attributes against the
    song's voiced intervals; also the pooled AUC and the pooled ``(vocal scores, labels)``.
    A song that gave no features (a decode error) is left out; it is in the corpus' issue table."""
    from musicrecall.audio.features import ATTRIBUTES

    vi, pvi = ATTRIBUTES.index("vocal"), ATTRIBUTES.index("pure_vocal")
    rows, scores, labels = [], [], []
    for path in aset.songs:
        f = str(path)
        if f not in corpus.segments:
            continue
        lab = vocal_labels(corpus.starts[f], segment_s, aset.voiced[f])
        keep = lab >= 0
        seg = corpus.segments[f][keep]
        rows.append({"song": aset.label(path), "vocal_segments": int((lab == 1).sum()),
                     "non_vocal_segments": int((lab == 0).sum()), "auc_vocal": auc(seg[:, vi], lab[keep]),
                     "auc_pure_vocal": auc(seg[:, pvi], lab[keep])})
        scores.append(seg[:, vi])
        labels.append(lab[keep])
    s, y = (np.concatenate(scores), np.concatenate(labels)) if rows else (np.zeros(0), np.zeros(0, dtype=int))
    return pl.DataFrame(rows), auc(s, y), s, y


def instrumental_ranking(corpus, aset, scores: np.ndarray, labels: np.ndarray) -> tuple[pl.DataFrame, float, float, float]:
    """``(file table, file AUC of songs over instrumental files, share of instrumental segments called
    instrumental, threshold)``. The threshold maximises Youden's J on the pooled song segments."""
    from sklearn.metrics import roc_curve

    from musicrecall.audio.features import ATTRIBUTES

    vi = ATTRIBUTES.index("vocal")
    fpr, tpr, thr = roc_curve(labels, scores)
    # the first roc_curve threshold is +inf (nothing called vocal): keep the threshold finite
    threshold = float(min(thr[np.argmax(tpr - fpr)], np.max(scores) + 1e-9))
    rows = [{"file": aset.label(p), "kind": "song" if p in aset.songs else "instrumental", "style": aset.style[str(p)],
             "mean_vocal": float(corpus.segments[str(p)][:, vi].mean()),
             "segments_called_instrumental": float((corpus.segments[str(p)][:, vi] < threshold).mean())}
            for p in aset.files if str(p) in corpus.segments]
    table = pl.DataFrame(rows).sort("mean_vocal", descending=True)
    file_auc = auc(table["mean_vocal"].to_numpy(), (table["kind"] == "song").to_numpy())
    share = float(table.filter(pl.col("kind") == "instrumental")["segments_called_instrumental"].mean())
    return table, file_auc, share, threshold


def nn_style_check(corpus, aset, k: int = 3) -> tuple[pl.DataFrame, float, float]:
    """Standardise the 84-dim statistics over the set's files, search the ``k`` nearest neighbours
    (cosine, faiss); returns ``(table, share whose nearest neighbour has the same style, chance rate)``."""
    from musicrecall.audio.features import EmbeddingScaler
    from musicrecall.audio.recall import AudioIndex

    files = [str(p) for p in aset.files if str(p) in corpus.segments]
    emb = EmbeddingScaler().fit_transform(corpus.raw[[corpus.files.index(f) for f in files]])
    ids, sims = AudioIndex(np.arange(len(files)), emb).neighbours(np.arange(len(files)), k)
    name, style = [aset.label(f) for f in files], [aset.style[f] for f in files]
    table = pl.DataFrame({"file": name, "style": style, **{f"nn{j + 1}": [name[i] for i in ids[:, j]] for j in range(k)},
                          "nn1_style": [style[i] for i in ids[:, 0]], "nn1_cos": sims[:, 0]})
    counts = np.unique(style, return_counts=True)[1]
    chance = float((counts * (counts - 1)).sum() / (len(style) * (len(style) - 1)))
    return table, float((table["style"] == table["nn1_style"]).mean()), chance


def attribute_heatmap(attrs: np.ndarray, starts: np.ndarray, names: tuple[str, ...], title: str = "",
                      voiced: list[tuple[float, float]] | None = None, voiced_label: str = "sung lyric lines"):
    """Heat-map of per-segment attributes (each row min-max scaled), voiced intervals marked underneath."""
    import matplotlib.pyplot as plt

    lo, hi = attrs.min(axis=0), attrs.max(axis=0)
    z = ((attrs - lo) / np.where(hi > lo, hi - lo, 1.0)).T
    fig, ax = plt.subplots(figsize=(10, 4))
    step = float(starts[1] - starts[0]) if len(starts) > 1 else 4.0
    ax.imshow(z, aspect="auto", cmap="magma", extent=(starts[0], starts[-1] + step, len(names) - 0.5, -0.5),
              interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for a, b in voiced or []:
        ax.axvspan(a, b, ymin=0.0, ymax=0.03, color="cyan")
    ax.set(title=title, xlabel=f"segment start (s); cyan ticks: {voiced_label}")
    fig.tight_layout()
    return fig


def binned_plot(tables: dict[str, pl.DataFrame]):
    """Full-play rate per audio-similarity decile, one line (with 95% band) per world."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, t in tables.items():
        ax.plot(t["sim"], t["rate"], "o-", label=name)
        ax.fill_between(t["sim"], t["lo"], t["hi"], alpha=0.2)
    ax.set(xlabel="audio similarity to the user's recent full plays (decile mean)", ylabel="full-play rate",
           title="full-play rate vs audio similarity")
    ax.legend()
    fig.tight_layout()
    return fig
