"""musicnn (Pons & Serra 2019, "musicnn: pre-trained convolutional neural networks for music audio
tagging", ISMIR LBD) ported to torch, loading the MagnaTagATune checkpoint shipped in the PyPI wheel
``musicnn==0.1.0`` without TensorFlow.

Architecture (``musicnn/models.py`` of the wheel): batch-normalised log-mel input (96 bands, 16 kHz,
hop 256) -> musically motivated front-end (timbral convs 7x38 and 7x67 over frequency, temporal convs
128/64/32 x 1, each ReLU -> BN -> max over frequency) -> mid-end of three 7-frame 1-D convs with
residual connections -> back-end: max and mean over time, BN, dense 200, BN, dense 50 (sigmoid tags).

The front- and mid-end are fully convolutional in time, so :meth:`MusiCNN.frame_features` runs them
once over a whole clip and :meth:`MusiCNN.pool_segments` tags any set of (overlapping) segments from
the per-frame features; this equals running each segment as a patch except for a few boundary frames
(measured in notebook 05). :meth:`MusiCNN.forward` is the reference per-patch behaviour.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicrecall.config import DATA_DIR

SR = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: the input length the models were trained on
MTT_LABELS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
              "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
              "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
              "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance",
              "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal",
              "female voice", "choral")  # fmt: skip
_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default epsilon


class WeightsNotFoundError(FileNotFoundError):
    """The musicnn checkpoint is not installed (see :func:`find_checkpoint`)."""


def find_checkpoint(model: str = "MTT_musicnn") -> Path:
    """Folder of the checkpoint: ``$MUSICRECALL_MUSICNN_DIR/<model>``, else ``data/models/musicnn/<model>``,
    else the files of an installed ``musicnn`` wheel (``pip install --no-deps musicnn==0.1.0``; the
    package is located, never imported, since it imports TensorFlow)."""
    candidates = []
    if os.environ.get("MUSICRECALL_MUSICNN_DIR"):
        candidates.append(Path(os.environ["MUSICRECALL_MUSICNN_DIR"]) / model)
    candidates.append(DATA_DIR / "models" / "musicnn" / model)
    spec = importlib.util.find_spec("musicnn")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / model for p in spec.submodule_search_locations]
    for folder in candidates:
        if (folder / ".index").exists() and (folder / ".data-00000-of-00001").exists():
            return folder
    raise WeightsNotFoundError(
        f"musicnn checkpoint {model} not found in {[str(c) for c in candidates]}; install it with "
        "`.venv/bin/pip install --no-deps musicnn==0.1.0` (make install does this)")


class _BN(nn.Module):
    """Inference-mode batch norm over the channel axis ``dim`` (TF moving statistics)."""

    def __init__(self, w: dict[str, np.ndarray], name: str, dim: int = 1) -> None:
        super().__init__()
        scale = w[f"{name}/gamma"] / np.sqrt(w[f"{name}/moving_variance"] + _EPS)
        shift = w[f"{name}/beta"] - w[f"{name}/moving_mean"] * scale
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)))
        self.register_buffer("shift", torch.from_numpy(shift.astype(np.float32)))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


def _param(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)), requires_grad=False)


class MusiCNN(nn.Module):
    """The MTT_musicnn tagger (50 MagnaTagATune tags) with weights from a TF V2 bundle."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        w = weights
        self.bn_in = _BN(w, "batch_normalization")
        conv2d = [f"conv2d_{i}" if i else "conv2d" for i in range(8)]
        # TF conv2d kernels are [kh, kw, in, out]; torch wants [out, in, kh, kw]
        self.k_front = nn.ParameterList([_param(w[f"{c}/kernel"].transpose(3, 2, 0, 1)) for c in conv2d[:5]])
        self.b_front = nn.ParameterList([_param(w[f"{c}/bias"]) for c in conv2d[:5]])
        self.bn_front = nn.ModuleList([_BN(w, f"batch_normalization_{i}") for i in range(1, 6)])
        # mid-end convs span the whole feature axis: 1-D convs with in-channels = that axis
        self.k_mid = nn.ParameterList([_param(w[f"{c}/kernel"][:, :, 0, :].transpose(2, 1, 0)) for c in conv2d[5:]])
        self.b_mid = nn.ParameterList([_param(w[f"{c}/bias"]) for c in conv2d[5:]])
        self.bn_mid = nn.ModuleList([_BN(w, f"batch_normalization_{i}") for i in range(6, 9)])
        self.bn_pool = _BN(w, "batch_normalization_9")
        self.dense = _param(w["dense/kernel"])
        self.dense_b = _param(w["dense/bias"])
        self.bn_dense = _BN(w, "batch_normalization_10")
        self.out = _param(w["dense_1/kernel"])
        self.out_b = _param(w["dense_1/bias"])

    @classmethod
    def from_checkpoint(cls, folder: str | Path | None = None) -> MusiCNN:
        """Load from a checkpoint folder (default: :func:`find_checkpoint`)."""
        from musicrecall.models.tfbundle import read_bundle

        folder = Path(folder) if folder is not None else find_checkpoint()
        model = cls(read_bundle(str(folder) + "/"))
        return model.eval()

    def frame_features(self, mel: torch.Tensor) -> torch.Tensor:
        """Per-frame front+mid-end features ``(B, 753, T)`` of log-mel input ``(B, T, 96)``."""
        x = self.bn_in(mel.unsqueeze(1))  # (B, 1, T, 96)
        feats = []
        for i in range(5):
            k = self.k_front[i]
            if i < 2:  # timbral: zero-pad time by 3, 'valid' over frequency
                xi = F.pad(x, (0, 0, 3, 3))
            else:  # temporal: TF 'same' padding of an even kernel puts the extra frame after
                kh = k.shape[2]
                xi = F.pad(x, (0, 0, (kh - 1) // 2, kh // 2))
            feats.append(self._conv_maxfreq(xi, i))
        front = torch.cat(feats, dim=1)  # (B, 561, T)
        h = front
        mids = []
        for i in range(3):
            y = self.bn_mid[i](F.relu(F.conv1d(F.pad(h, (3, 3)), self.k_mid[i], self.b_mid[i])))
            h = y if i == 0 else y + h
            mids.append(h)
        return torch.cat([front, *mids], dim=1)

    def _conv_maxfreq(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """conv -> ReLU -> BN -> max over frequency of front-end branch ``i``, as ``(B, C, T)``.

        Reordered for speed, exactly: the bias is constant over frequency and ReLU and BN are monotone
        per channel, so ``max_f BN(ReLU(z + b)) = BN(ReLU(max_f z + b))`` where BN's scale is positive and
        ``BN(ReLU(min_f z + b))`` where it is negative; only one min/max pass touches the big tensor.
        """
        bn = self.bn_front[i]
        z_min, z_max = self._conv_minmax_freq(x, self.k_front[i])
        pos = (bn.scale > 0).view(1, -1, 1)
        z = torch.where(pos, z_max, z_min) + self.b_front[i].view(1, -1, 1)
        return bn(F.relu(z))

    @staticmethod
    def _conv_minmax_freq(x: torch.Tensor, k: torch.Tensor, chunk: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """Min and max over frequency of the 'valid' convolution of ``x`` (B, 1, T', F) with ``k``
        (C, 1, kh, kw), each ``(B, C, T)``. The input has one channel, so the convolution is one matrix
        product of the (time, frequency) patches with the kernels; done in time chunks, it never holds
        the (C, T, F) output and runs about a third faster on one thread than ``conv2d`` + ``aminmax``."""
        c, _, kh, kw = k.shape
        w = k[:, 0].reshape(c, kh * kw).T.contiguous()  # (kh*kw, C)
        n_f, n_t = x.shape[3] - kw + 1, x.shape[2] - kh + 1
        lo, hi = torch.empty(x.shape[0], n_t, c), torch.empty(x.shape[0], n_t, c)
        for b in range(x.shape[0]):
            for s in range(0, n_t, chunk):
                e = min(n_t, s + chunk)
                patches = x[b, 0, s:e + kh - 1].unfold(0, kh, 1).unfold(1, kw, 1).reshape(-1, kh * kw)
                z = (patches @ w).view(e - s, n_f, c)
                torch.amin(z, dim=1, out=lo[b, s:e])  # two passes beat one aminmax over a middle axis
                torch.amax(z, dim=1, out=hi[b, s:e])
        return lo.transpose(1, 2), hi.transpose(1, 2)

    def head(self, max_pool: torch.Tensor, mean_pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Back-end on pooled features ``(N, 753)`` each: ``(logits (N, 50), penultimate (N, 200))``."""
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF interleaves max, mean
        pen = self.bn_dense(F.relu(self.bn_pool(flat) @ self.dense + self.dense_b))
        return pen @ self.out + self.out_b, pen

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference per-patch tagging: ``(B, T, 96)`` -> ``(logits (B, 50), penultimate (B, 200))``."""
        f = self.frame_features(mel)
        return self.head(f.amax(dim=2), f.mean(dim=2))

    def pool_segments(self, feats: torch.Tensor, starts: np.ndarray, length: int) -> torch.Tensor:
        """Tag probabilities ``(S, 50)`` of segments ``[start, start + length)`` of one clip's frame
        features ``(753, T)`` (vectorised with an unfold over time)."""
        win = feats.unfold(1, length, 1)[:, torch.as_tensor(starts, dtype=torch.long)]  # (753, S, L)
        logits, _ = self.head(win.amax(dim=2).T, win.mean(dim=2).T)
        return torch.sigmoid(logits)


def log_mel(power_mel: np.ndarray) -> np.ndarray:
    """musicnn's input compression: float16 cast, then ``log10(10000 x + 1)`` (``extractor.batch_data``)."""
    return np.log10(10000.0 * power_mel.astype(np.float16).astype(np.float32) + 1.0)
