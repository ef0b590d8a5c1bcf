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
        """Per-frame front+mid-end features ``(B, 753, T)`` of log-mel input ``(B, T, 96)``.

        Computed with numpy matrix products (:func:`conv_select_freq`, :meth:`_mid_end`): on this
        project's AMD machine numpy's OpenBLAS ran these shapes at about twice the GFLOP/s of torch's
        MKL on one thread (80 vs 42 for the 7,552 x 266 x 204 product of the widest branch)."""
        arr = mel.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(np.stack([self._frame_features_np(m) for m in arr]))

    def _frame_features_np(self, mel: np.ndarray) -> np.ndarray:
        """``(753, T)`` float32 features of one clip's log-mel ``(T, 96)``."""
        plan = self._plan()
        x = mel * plan["bn_in"][0] + plan["bn_in"][1]  # one input channel: scalar scale and shift
        n_t = x.shape[0]
        front = []
        for br in plan["front"]:
            kh = br["kh"]
            # timbral (i < 2): zero-pad time by 3, 'valid' over frequency; temporal: TF 'same' padding of
            # an even kernel puts the extra frame after
            pad = (3, 3) if br["kw"] > 1 else ((kh - 1) // 2, kh // 2)
            xi = np.pad(x, (pad, (0, 0)))
            z = conv_select_freq(xi, br["w"], br["npos"], kh, br["kw"], br["block"])[:, br["inverse"]]
            front.append(np.maximum(z + br["bias"], 0.0) * br["scale"] + br["shift"])
        h = np.concatenate(front, axis=1)  # (T, 561)
        out = [h]
        for w, bias, scale, shift in plan["mid"]:
            y = self._mid_end(h, w, n_t)
            y = np.maximum(y + bias, 0.0) * scale + shift
            h = y if len(out) == 1 else y + h
            out.append(h)
        return np.ascontiguousarray(np.concatenate(out, axis=1).T, dtype=np.float32)

    @staticmethod
    def _mid_end(h: np.ndarray, w: np.ndarray, n_t: int) -> np.ndarray:
        """'same' 1-D convolution over time of ``h`` (T, C_in) with ``w`` (7, C_in, C_out): a sum of
        seven shifted matrix products (no (T, 7 C_in) patch matrix)."""
        hp = np.pad(h, ((3, 3), (0, 0)))
        y = hp[:n_t] @ w[0]
        for dt in range(1, w.shape[0]):
            y += hp[dt:dt + n_t] @ w[dt]
        return y

    def _plan(self) -> dict:
        """The weights as numpy arrays in the layout of :meth:`_frame_features_np` (built once)."""
        plan = self.__dict__.get("_np_plan")
        if plan is not None:
            return plan

        def np_(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float32)

        front = []
        for i in range(5):
            k, bn = np_(self.k_front[i]), self.bn_front[i]
            c, _, kh, kw = k.shape
            scale = np_(bn.scale)
            # max over frequency where BN's scale is positive, min where negative (see _select): the
            # columns are ordered positive first, so each reduction runs over one contiguous block
            order = np.argsort(scale <= 0, kind="stable")
            w = k[:, 0].reshape(c, kh * kw).T[:, order]  # (kh*kw, C) in that order
            front.append({"w": np.ascontiguousarray(w), "npos": int((scale > 0).sum()), "kh": kh, "kw": kw,
                          "block": 1 if kw > 1 else TEMPORAL_BLOCK, "inverse": np.argsort(order),
                          "bias": np_(self.b_front[i]), "scale": scale, "shift": np_(bn.shift)})
        mid = [(np.ascontiguousarray(np_(self.k_mid[i]).transpose(2, 1, 0)), np_(self.b_mid[i]),
                np_(self.bn_mid[i].scale), np_(self.bn_mid[i].shift)) for i in range(3)]
        bn_in = (float(self.bn_in.scale[0]), float(self.bn_in.shift[0]))
        plan = {"front": front, "mid": mid, "bn_in": bn_in}
        self.__dict__["_np_plan"] = plan  # the weights are frozen (requires_grad=False, eval mode)
        return plan

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


TEMPORAL_BLOCK = 8  # output frames per row of a temporal branch's matrix product (see conv_select_freq)


def conv_select_freq(x: np.ndarray, w: np.ndarray, npos: int, kh: int, kw: int, block: int = 1,
                     chunk_rows: int = 1024) -> np.ndarray:
    """Max over frequency (first ``npos`` kernels) and min over frequency (the rest) of the 'valid'
    convolution of one single-channel input ``x`` (T', F) with kernels ``w`` (kh*kw, C): ``(T, C)`` with
    ``T = T' - kh + 1``. Exactly the front-end branch's reduction before its bias, ReLU and BN: the bias is
    constant over frequency and ReLU and BN are monotone per channel, so ``max_f BN(ReLU(z + b)) =
    BN(ReLU(max_f z + b))`` where BN's scale is positive and the same with ``min`` where it is negative.

    The input has one channel, so the convolution is one matrix product of the (time, frequency)
    patches with the kernels, done in chunks of about ``chunk_rows`` patch rows (the (C, T, F) output is
    never held). With ``block > 1`` (temporal kernels, ``kw == 1``) each row holds ``kh + block - 1``
    frames of one band and the kernels are laid out block-Toeplitz, giving ``block`` output frames per
    row: ``block`` times fewer, only slightly longer rows and ``block`` times wider products, which run
    near the machine's peak where the 51 kernels alone do not.
    """
    n_t, n_f = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    c = w.shape[1]
    x = np.ascontiguousarray(x, dtype=np.float32)
    if block > 1:
        if kw != 1:
            raise ValueError("block > 1 is for temporal kernels (kw == 1)")
        n_b = -(-n_t // block)
        xp = np.pad(x, ((0, n_b * block - n_t), (0, 0)))  # the last block's extra frames are dropped
        length = kh + block - 1
        wb = np.zeros((length, block, c), np.float32)
        for j in range(block):
            wb[j:j + kh, j] = w
        wb = wb.reshape(length, block * c)
        f4 = xp.strides[0]
        win = np.lib.stride_tricks.as_strided(xp, (n_b, n_f, length), (block * f4, xp.strides[1], f4), writeable=False)
        out = np.empty((n_b, block, c), np.float32)
        step = max(1, chunk_rows // n_f)
        for s in range(0, n_b, step):
            e = min(n_b, s + step)
            z = (win[s:e].reshape(-1, length) @ wb).reshape(e - s, n_f, block, c)
            _select(z, npos, out[s:e])
        return out.reshape(n_b * block, c)[:n_t]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw))  # (T, F', kh, kw), a view
    out = np.empty((n_t, c), np.float32)
    step = max(1, chunk_rows // n_f)
    for s in range(0, n_t, step):
        e = min(n_t, s + step)
        z = (win[s:e].reshape(-1, kh * kw) @ w).reshape(e - s, n_f, c)
        _select(z, npos, out[s:e])
    return out


def _select(z: np.ndarray, npos: int, out: np.ndarray) -> None:
    """``out[..., :npos] = max over axis 1``, ``out[..., npos:] = min over axis 1`` of ``z``."""
    np.max(z[:, :, ..., :npos], axis=1, out=out[..., :npos])
    np.min(z[:, :, ..., npos:], axis=1, out=out[..., npos:])


def log_mel(power_mel: np.ndarray) -> np.ndarray:
    """musicnn's input compression: float16 cast, then ``log10(10000 x + 1)`` (``extractor.batch_data``)."""
    return np.log10(10000.0 * power_mel.astype(np.float16).astype(np.float32) + 1.0)
