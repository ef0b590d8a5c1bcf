"""Benchmark of KG Song2Vec training cost against plain Song2Vec (musicrecall.kg).

Workload: the simulated world at ``--profile`` (default ``small``), fit window of the test split, the
tuned-by-default Song2Vec configuration (dim 32, window 5, 5 epochs). For each gamma, plain Song2Vec and
KG Song2Vec are trained alternately ``--runs`` times on the same session corpus and epochs (no cache);
reported: median training seconds, words/s (tokens processed / second, gensim's raw count) and the
**ratio KG / plain of the medians** measured in the same run. Bar (issue 3): KG <= 1.5x plain at the
gamma the notebook uses. Ratios, not absolute times: the machine is shared.

Usage::

    .venv/bin/python bench/bench_song2vec.py [--profile small] [--gammas 0.1 0.3] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from musicrecall import config, kg
from musicrecall.data import prepare
from musicrecall.experiment import make_eval_setup

BAR = 1.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="small")
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.1, 0.3])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    workers = config.set_threads(args.threads)
    prep = prepare("world", profile=args.profile, seed=0)
    n_items = prep.dataset.items.height
    fit = make_eval_setup(prep.clean.events, n_items, stage="test").fit
    cfg = kg.Song2VecConfig()
    plain_corpus = kg.build_corpus(fit, prep.dataset.triples, n_items, kg.KGConfig(gamma=0.0))
    rows = []
    for gamma in args.gammas:
        kg_corpus = kg.build_corpus(fit, prep.dataset.triples, n_items, kg.KGConfig(gamma=gamma))
        times: dict[str, list[float]] = {"plain": [], "kg": []}
        words: dict[str, list[float]] = {"plain": [], "kg": []}
        for _ in range(args.runs):  # alternate so that load changes hit both alike
            for name, corpus in (("plain", plain_corpus), ("kg", kg_corpus)):
                _, seconds, (_, raw) = kg.train_word2vec(corpus, cfg, workers)
                times[name].append(seconds)
                words[name].append(raw / seconds)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"gamma": gamma, "tokens_plain": plain_corpus.n_tokens, "tokens_kg": kg_corpus.n_tokens,
               "plain_s": med["plain"], "kg_s": med["kg"], "ratio": med["kg"] / med["plain"],
               "words_per_s_plain": statistics.median(words["plain"]), "words_per_s_kg": statistics.median(words["kg"])}
        rows.append(row)
        print(f"gamma={gamma}: tokens {row['tokens_kg'] / row['tokens_plain']:.2f}x, time KG/plain {row['ratio']:.2f}x "
              f"(bar {BAR}x: {'ok' if row['ratio'] <= BAR else 'over'}), words/s plain {row['words_per_s_plain']:,.0f} "
              f"KG {row['words_per_s_kg']:,.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"profile": args.profile, "workers": workers, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
