"""The linear probe of B's embeddings: it finds what is there and nothing that is not."""

from __future__ import annotations

import numpy as np
import pytest

from musicrecall.federated.probe import linear_probe, probe_summary, probe_table, r2_per_column


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2000, 6))


def test_a_linear_embedding_reveals_every_feature(raw):
    rng = np.random.default_rng(1)
    emb = raw @ rng.normal(size=(6, 16)) + 0.05 * rng.normal(size=(2000, 16))
    r2, _ = linear_probe(emb, raw)
    assert (r2 > 0.99).all()


def test_random_vectors_reveal_nothing(raw):
    r2, _ = linear_probe(np.random.default_rng(2).normal(size=(2000, 16)), raw)
    assert (np.abs(r2) < 0.05).all()


def test_an_embedding_of_one_feature_reveals_that_feature_only(raw):
    rng = np.random.default_rng(3)
    emb = np.tanh(np.outer(raw[:, 2], rng.normal(size=8))) + 0.1 * rng.normal(size=(2000, 8))
    tab = probe_table({"one": emb}, raw)
    r2 = dict(zip(tab["feature"], tab["r2"], strict=True))
    assert r2["f02"] > 0.7 and max(v for f, v in r2.items() if f != "f02") < 0.05
    assert probe_summary(tab).row(0, named=True)["features_r2_over_half"] == 1


def test_r2_definition_and_bad_input():
    y = np.array([[1.0], [2.0], [3.0]])
    assert r2_per_column(y, y)[0] == 1.0 and r2_per_column(y, np.full_like(y, 2.0))[0] == 0.0
    with pytest.raises(ValueError, match="embedding rows"):
        linear_probe(np.zeros((30, 2)), np.zeros((31, 2)))
