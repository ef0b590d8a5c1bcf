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
    """The chunked patch x kernel products (plain and block-Toeplitz) give conv2d's max over frequency
    for the first ``npos`` kernels and min for the rest (float rounding), ragged last chunks included."""
    import torch.nn.functional as F

    from musicrecall.models.musicnn import conv_select_freq

    torch.manual_seed(0)
    x = torch.randn(1, 1, 301, 96)
    for k, block in ((torch.randn(8, 1, 7, 38), 1), (torch.randn(5, 1, 32, 1), 1), (torch.randn(5, 1, 32, 1), 8),
                     (torch.randn(6, 1, 7, 1), 4)):
        c, _, kh, kw = k.shape
        npos = c // 2
        ref_lo, ref_hi = torch.aminmax(F.conv2d(x, k), dim=3)
        ref = torch.cat([ref_hi[0, :npos], ref_lo[0, npos:]]).T.numpy()  # (T, C)
        w = k[:, 0].reshape(c, kh * kw).T.numpy()
        out = conv_select_freq(x[0, 0].numpy(), w, npos, kh, kw, block, chunk_rows=700)  # several chunks
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="temporal"):
        conv_select_freq(x[0, 0].numpy(), np.zeros((7 * 38, 2), np.float32), 1, 7, 38, block=4)


def test_numpy_frame_features_equal_the_torch_layers(model):
    """The numpy front/mid-end (what frame_features runs) against the same layers in torch (conv2d, max
    over frequency, ReLU, BN; conv1d mid-end with residuals), written here from the architecture."""
    import torch.nn.functional as F

    mel = torch.from_numpy(np.load(REFERENCE)["mel"][:1].astype(np.float32))
    with torch.inference_mode():
        x = model.bn_in(mel.unsqueeze(1))
        feats = []
        for i in range(5):
            k = model.k_front[i]
            kh = k.shape[2]
            xi = F.pad(x, (0, 0, 3, 3)) if i < 2 else F.pad(x, (0, 0, (kh - 1) // 2, kh // 2))
            feats.append(model.bn_front[i](F.relu(F.conv2d(xi, k, model.b_front[i]))).amax(dim=3))
        h = front = torch.cat(feats, dim=1)
        mids = []
        for i in range(3):
            y = model.bn_mid[i](F.relu(F.conv1d(F.pad(h, (3, 3)), model.k_mid[i], model.b_mid[i])))
            h = y if i == 0 else y + h
            mids.append(h)
        ref = torch.cat([front, *mids], dim=1)
        got = model.frame_features(mel)
    assert got.shape == ref.shape == (1, 753, mel.shape[1])
    torch.testing.assert_close(got, ref, atol=2e-4, rtol=1e-4)
