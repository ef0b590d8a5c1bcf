"""The audio speed-ups change no result beyond float rounding: segment attributes, tag probabilities and
the 84 statistics of every shared clip (``SHARED_DIR/audio``) against those the code gave before them
(``tests/data/audio_shared_embeddings.npz``, written by ``tests/data/make_audio_shared_embeddings.py``
at the commit it records), whole clips and the first 120 s.

Tolerances (stated, not tuned: float32 sums in another order differ in the 6th-7th digit):

* tag probabilities and the 14 attributes per segment: ``|after - before| <= 2e-4 + 1e-4 |before|``
  (tempo, an argmax over lags, must be equal: a moved peak is a changed result);
* the 84 statistics, standardised with the before-corpus' mean and standard deviation (what retrieval
  sees): within 2e-3 standard deviations.

The shared clips are required: missing ones fail the test (no skip).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from musicrecall.audio.features import ATTRIBUTES
from musicrecall.config import SHARED_DIR

DATA = Path(__file__).parent / "data"
BEFORE = DATA / "audio_shared_embeddings.npz"


def _maker():
    spec = importlib.util.spec_from_file_location("make_audio_shared_embeddings", DATA / "make_audio_shared_embeddings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def before() -> dict[str, np.ndarray]:
    if not (SHARED_DIR / "audio").is_dir():
        pytest.fail(f"shared audio missing at {SHARED_DIR / 'audio'} (set MUSICRECALL_SHARED or check out ../shared)")
    with np.load(BEFORE) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["whole", "first120"])
def test_embeddings_equal_the_stored_ones_up_to_float_rounding(before, setting):
    maker = _maker()
    files = [p.relative_to(SHARED_DIR).as_posix() for p in maker.shared_clips()]
    assert files == before["files"].tolist(), "the shared clips changed: rewrite the stored embeddings"
    now = maker.compute(maker.SETTINGS[setting])
    ref = {k: before[f"{setting}_{k}"] for k in ("attrs", "tags", "raw", "counts")}
    np.testing.assert_array_equal(now["counts"], ref["counts"])
    np.testing.assert_allclose(now["tags"], ref["tags"], rtol=1e-4, atol=2e-4)
    tempo = ATTRIBUTES.index("tempo")
    np.testing.assert_array_equal(now["attrs"][:, tempo], ref["attrs"][:, tempo])
    np.testing.assert_allclose(now["attrs"], ref["attrs"], rtol=1e-4, atol=2e-4)
    sd = ref["raw"].std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    np.testing.assert_allclose((now["raw"] - ref["raw"]) / sd, 0.0, atol=2e-3)
