"""The TF-bundle reader and the torch musicnn port against stored reference outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicrecall.audio.validation import REFERENCE, port_check
from musicrecall.models.musicnn import MTT_LABELS, MusiCNN, find_checkpoint
from musicrecall.models.tfbundle import BundleError, read_bundle, read_index


@pytest.fixture(scope="module")
def model() -> MusiCNN:
    return MusiCNN.from_checkpoint()


def test_bundle_reader_reads_the_checkpoint():
    folder = find_checkpoint()
    index = read_index(str(folder) + "/.index")
    assert index["conv2d/kernel"][1] == (7, 38, 1, 204)
    assert index["dense_1/kernel"][1] == (200, 50)
    w = read_bundle(str(folder) + "/")
    n_params = sum(v.size for k, v in w.items() if "Adam" not in k)
    assert 780_000 < n_params < 800_000  # "about 800k parameters"
    assert np.all(w["batch_normalization_1/moving_variance"] > 0)


def test_bundle_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "x.index"
    bad.write_bytes(b"not an sstable" * 10)
    with pytest.raises(BundleError):
        read_index(bad)


def test_port_matches_reference_outputs(model):
    ref = np.load(REFERENCE)
    assert ref["tags"].shape == (12, 50) and len(MTT_LABELS) == 50
    check = port_check(model)
    assert check["max_abs_tag_diff"] < 1e-3
    assert check["max_abs_penultimate_diff"] < 1e-2
    assert check["tag_corr"] > 0.9999


def test_pooled_head_equals_patch_forward(model):
    mel = torch.from_numpy(np.load(REFERENCE)["mel"][:2].astype(np.float32))
    with torch.inference_mode():
        logits, _ = model(mel)
        pooled = model.pool_segments(model.frame_features(mel[:1])[0], np.array([0]), mel.shape[1])
    np.testing.assert_allclose(pooled.numpy()[0], torch.sigmoid(logits[0]).numpy(), atol=1e-6)


def test_streaming_segments_approximate_patches(model):
    """Segments pooled from one pass over a long clip differ from separate patches only near edges."""
    mel = torch.from_numpy(np.load(REFERENCE)["mel"][3:6].astype(np.float32))  # three patches of one file
    long = mel.reshape(1, -1, 96)
    with torch.inference_mode():
        separate = torch.sigmoid(model(mel)[0]).numpy()
        stream = model.pool_segments(model.frame_features(long)[0], np.array([0, 187, 374]), 187).numpy()
    assert np.corrcoef(separate.ravel(), stream.ravel())[0, 1] > 0.95


def test_front_end_matrix_product_equals_conv2d():
    """The chunked patch x kernel product gives conv2d's min and max over frequency (float rounding)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(2, 1, 300, 96)
    for k in (torch.randn(8, 1, 7, 38), torch.randn(5, 1, 32, 1)):
        lo, hi = MusiCNN._conv_minmax_freq(x, k, chunk=64)  # several chunks and a ragged last one
        ref_lo, ref_hi = torch.aminmax(F.conv2d(x, k), dim=3)
        torch.testing.assert_close(lo, ref_lo, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(hi, ref_hi, atol=1e-4, rtol=1e-5)
