"""Bad audio: each case gets a clear per-file error or warning, and the run continues."""

from __future__ import annotations

import numpy as np
import pytest

from musicrecall.audio import AudioDecodeError, embed_files, load_audio
from musicrecall.audio.validation import make_bad_files

SR = 22_050


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    t = np.arange(10 * SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    return make_bad_files(tmp_path_factory.mktemp("bad"), y, SR)


def test_every_case_is_reported_and_good_files_embed(bad, tmp_path):
    c = embed_files(list(bad.values()), cache_dir=tmp_path)
    kinds = {(i.file.split("/")[-1], i.level, i.kind) for i in c.issues}
    assert ("corrupt.mp3", "error", "undecodable") in kinds
    assert ("silent.wav", "error", "silent") in kinds
    assert ("truncated.wav", "warning", "truncated") in kinds
    assert ("short.wav", "warning", "too_short") in kinds
    assert ("odd_rate.wav", "warning", "odd_sample_rate") in kinds
    ok = {f.split("/")[-1] for f in c.files}
    assert {"good.wav", "good.ogg", "good.mp3", "good.opus", "truncated.wav", "short.wav", "odd_rate.wav"} == ok
    assert c.raw.shape == (7, 84) and np.isfinite(c.raw).all()
    assert c.issue_table().height == len(c.issues)
    # second run: everything from the cache, the same issues listed
    again = embed_files(list(bad.values()), cache_dir=tmp_path)
    assert again.seconds_cpu == 0 and sorted(map(str, again.issues)) == sorted(map(str, c.issues))
    np.testing.assert_allclose(again.raw, c.raw)


def test_codecs_decode_to_the_same_signal(bad):
    ref, _ = load_audio(bad["good_wav"])
    for case in ("good_ogg", "good_mp3", "good_opus"):
        y, issues = load_audio(bad[case])
        n = min(len(ref), len(y))
        lag = int(np.argmax(np.correlate(y[:16000], ref[:4000], "valid")))  # codec delay
        corr = np.corrcoef(ref[: n - lag - 1000], y[lag: n - 1000])[0, 1]
        assert corr > 0.9, (case, corr)
        assert not [i for i in issues if i.level == "error"]


def test_errors_raise_with_the_issue(bad, tmp_path):
    with pytest.raises(AudioDecodeError) as err:
        load_audio(bad["silent"])
    assert err.value.issue.kind == "silent"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError):
        load_audio(empty)
    assert embed_files([tmp_path / "missing.ogg"], cache=False).issues[0].kind == "missing"
