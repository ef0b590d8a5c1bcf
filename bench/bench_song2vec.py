"""Benchmark of KG Song2Vec training cost against plain Song2Vec (musicrecall.kg).

Workload: the simulated world at ``--profile`` (default ``small``), fit window of the test split, the
Song2Vec configuration notebook 02 tunes at small (dim 32, window 5, 5 epochs, ns_exponent -0.5). For each gamma, plain Song2Vec and
KG Song2Vec are trained alternately ``--runs`` times on the same session corpus and epochs (no cache);
reported: median training seconds, words/s (tokens processed / second, gensim's raw count) and the
**ratio KG / plain of the medians** measured in the same run. Bar (issue 3): KG <= 1.5x plain at the
gamma the notebook uses. Ratios, not absolute times: the machine is shared. Also reported, as a
machine-independent cost: the ratio of expected skip-gram (centre, context) pairs per epoch, after
frequent-token subsampling and gensim's shrunk windows.

``--dataset`` takes an imported folder (e.g. ``data/raw/30music``) instead of the world, and ``--weights`` the
relation weights as JSON (notebook 02 chooses them per dataset; default: the prior ``kg.DEFAULT_WEIGHTS``).

Usage::

    .venv/bin/python bench/bench_song2vec.py [--profile small] [--gammas 0.1 0.2 0.3] [--runs 3] [--threads 2]
    .venv/bin/python bench/bench_song2vec.py --dataset data/raw/30music --weights '{"song_artist": 1, "song_album": 1}'
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from musicrecall import config, kg
from musicrecall.data import prepare
from musicrecall.evaluation import make_eval_setup

BAR = 1.5


def expected_pairs(corpus: kg.Corpus, window: int, sample: float) -> float:
    """Expected skip-gram pairs of one epoch: word2vec's keep probability per token, each sentence's
    expected length after subsampling, and a window shrunk uniformly to 1..``window`` (gensim's default)."""
    lengths = np.array([len(s) for s in corpus.sentences])
    words, codes = np.unique(np.concatenate([np.asarray(s, dtype=object) for s in corpus.sentences]).astype(str),
                             return_inverse=True)
    counts = np.bincount(codes, minlength=len(words))
    threshold = sample * counts.sum()
    keep = np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)[codes]
    kept = np.rint(np.add.reduceat(keep, np.r_[0, np.cumsum(lengths)[:-1]])).astype(np.int64)
    span = np.arange(1, window + 1)[:, None]
    per_len = np.array([(np.minimum(span, np.arange(n)) + np.minimum(span, n - 1 - np.arange(n))).mean(0).sum()
                        for n in range(kept.max() + 1)])
    return float(per_len[kept].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="small")
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dataset", default="world")
    ap.add_argument("--weights", default=None, help="relation weights as JSON (default: kg.DEFAULT_WEIGHTS)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    workers = config.set_threads(args.threads)
    prep = prepare(args.dataset, profile=args.profile, seed=0)
    n_items = prep.dataset.items.height
    triples = prep.dataset.triples if prep.dataset.triples.height else kg.triples_from_items(prep.dataset.items)
    weights = json.loads(args.weights) if args.weights else dict(kg.DEFAULT_WEIGHTS)
    fit = make_eval_setup(prep.clean.events, n_items, stage="test").fit
    cfg = kg.Song2VecConfig(ns_exponent=-0.5)
    plain_corpus = kg.build_corpus(fit, triples, n_items, kg.KGConfig(gamma=0.0))
    plain_pairs = expected_pairs(plain_corpus, cfg.window, cfg.sample)
    rows = []
    for gamma in args.gammas:
        kg_corpus = kg.build_corpus(fit, triples, n_items, kg.KGConfig(gamma=gamma, weights=weights))
        times: dict[str, list[float]] = {"plain": [], "kg": []}
        words: dict[str, list[float]] = {"plain": [], "kg": []}
        for _ in range(args.runs):  # alternate so that load changes hit both alike
            for name, corpus in (("plain", plain_corpus), ("kg", kg_corpus)):
                _, seconds, (_, raw) = kg.train_word2vec(corpus, cfg, workers)
                times[name].append(seconds)
                words[name].append(raw / seconds)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"gamma": gamma, "tokens_plain": plain_corpus.n_tokens, "tokens_kg": kg_corpus.n_tokens,
               "pairs_ratio": expected_pairs(kg_corpus, cfg.window, cfg.sample) / plain_pairs,
               "plain_s": med["plain"], "kg_s": med["kg"], "ratio": med["kg"] / med["plain"],
               "words_per_s_plain": statistics.median(words["plain"]), "words_per_s_kg": statistics.median(words["kg"])}
        rows.append(row)
        print(f"gamma={gamma}: tokens {row['tokens_kg'] / row['tokens_plain']:.2f}x, pairs {row['pairs_ratio']:.2f}x, time KG/plain {row['ratio']:.2f}x "
              f"(bar {BAR}x: {'ok' if row['ratio'] <= BAR else 'over'}), words/s plain {row['words_per_s_plain']:,.0f} "
              f"KG {row['words_per_s_kg']:,.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"profile": args.profile, "dataset": args.dataset, "weights": weights,
                                              "workers": workers, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
