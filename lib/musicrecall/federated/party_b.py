"""Party B (the other business): user features and the user tower, reachable only through the channel.

Party B reads its own table (``user_key``, ``b_age_bucket``, ``f00..f23``) from its own file, answers
the PSI, and trains user towers by split learning (Vepakomma et al., *Split learning for health:
Distributed deep learning without sharing raw patient data*, 2018):

* ``embed``: forward the tower on a batch of *aligned* users and send the embeddings (cut layer);
  with ``clip_norm``/``noise_multiplier`` each row is clipped to L2 norm ``C`` and Gaussian noise
  ``N(0, (sigma C)^2)`` is added before release (the Gaussian mechanism; Dwork & Roth 2014; its
  accounting, sensitivity ``2C`` and what it covers: :mod:`musicrecall.federated.privacy`);
* ``grad``: receive dL/d(embeddings) for the last training batch, back-propagate through the tower,
  clip the tower's gradient norm (``grad_clip``, as :func:`musicrecall.training.train` does), step AdamW;
* ``snapshot`` / ``restore``: keep or bring back the tower weights (early stopping, checkpoints).

:func:`start_party_b` runs B in a separate process (``spawn``, multiprocessing pipe) or, for tests, in
a thread of the current process behind the same byte channel.
"""

from __future__ import annotations

import math
import os
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from musicrecall.config import DATA_DIR, set_threads
from musicrecall.federated import psi as psi_mod
from musicrecall.federated.channel import Endpoint, Message, queue_pair
from musicrecall.federated.privacy import privacy_report
from musicrecall.models.dssm import UserTower, dense_user_features


@dataclass
class _TowerState:
    tower: UserTower
    opt: torch.optim.Optimizer
    cfg: dict[str, Any]
    generator: torch.Generator
    releases: np.ndarray
    pending: torch.Tensor | None = None
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


class PartyB:
    """Party B's state and message handlers (no reference to anything of party A)."""

    def __init__(self, table_path: str | Path):
        table = pl.read_parquet(table_path)
        self.keys: list[str] = table["user_key"].to_list()
        self.row_of = {k: i for i, k in enumerate(self.keys)}
        fcols = [c for c in table.columns if c.startswith("f") and c[1:].isdigit()]
        self.features = torch.from_numpy(dense_user_features(table, "b_age_bucket", fcols))
        self.aligned_rows = np.zeros(0, dtype=np.int64)
        self.towers: dict[str, _TowerState] = {}
        self.snapshot_dir = DATA_DIR / "party_b"

    # --- protocol handlers: each returns (reply type, arrays, meta) or None -------------------------
    def on_psi_request(self, msg: Message):
        setup, response = psi_mod.server_reply(self.keys, msg.arrays["request"].tobytes(), int(msg.meta["n_client"]))
        return "psi_reply", {"setup": psi_mod.blob(setup), "response": psi_mod.blob(response)}, {}

    def on_psi_aligned(self, msg: Message):
        self.aligned_rows = np.asarray([self.row_of[k] for k in psi_mod.decode_keys(msg.arrays["keys"])],
                                       dtype=np.int64)
        return "ok", {}, {"n_aligned": int(self.aligned_rows.shape[0])}

    def on_init_tower(self, msg: Message):
        cfg = dict(msg.meta)
        torch.manual_seed(int(cfg["seed"]))  # the same init as a centralised tower built with this seed
        tower = UserTower(self.features.shape[1], dim=int(cfg["dim"]), hidden=int(cfg["hidden"]))
        opt = torch.optim.AdamW(tower.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]),
                                fused=True)  # the kernel of musicrecall.training.train, as the central tower
        gen = torch.Generator().manual_seed(int(cfg["seed"]) + 7919)
        self.towers[cfg["name"]] = _TowerState(tower, opt, cfg, gen, np.zeros(self.aligned_rows.shape[0], np.int64))
        return "ok", {}, {"n_in": int(self.features.shape[1])}

    def _protect(self, st: _TowerState, emb: torch.Tensor) -> torch.Tensor:
        clip, sigma = st.cfg.get("clip_norm"), float(st.cfg.get("noise_multiplier") or 0.0)
        if clip:
            emb = emb * torch.clamp(float(clip) / (emb.norm(dim=1, keepdim=True) + 1e-12), max=1.0)
        if clip and sigma > 0:
            emb = emb + torch.randn(emb.shape, generator=st.generator) * (sigma * float(clip))
        return emb

    def on_embed(self, msg: Message):
        st = self.towers[msg.meta["name"]]
        idx = np.asarray(msg.arrays["idx"])
        x = self.features[torch.from_numpy(self.aligned_rows[idx])]
        np.add.at(st.releases, idx, 1)
        if msg.meta["train"]:
            st.tower.train()
            emb = self._protect(st, st.tower(x))
            st.pending = emb
            out = emb.detach()
        else:
            st.tower.eval()
            with torch.no_grad():
                out = self._protect(st, st.tower(x))
        return "embeddings", {"emb": out.numpy().astype(np.float32)}, {}

    def on_grad(self, msg: Message):
        st = self.towers[msg.meta["name"]]
        if st.pending is None:
            raise RuntimeError("gradient without a pending training batch")
        grad = torch.from_numpy(np.array(msg.arrays["grad"]))
        st.opt.zero_grad(set_to_none=True)
        st.pending.backward(grad)  # noise is additive: d(released)/d(clipped) = I
        if st.cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(st.tower.parameters(), float(st.cfg["grad_clip"]))
        st.opt.step()
        st.pending = None
        return None

    def _snapshot_path(self, name: str, run_key: str, token: int) -> Path:
        return self.snapshot_dir / f"{name}-{run_key}-{token}.pt"

    def on_snapshot(self, msg: Message):
        st, token = self.towers[msg.meta["name"]], int(msg.meta["token"])
        state = {k: v.detach().clone() for k, v in st.tower.state_dict().items()}
        st.snapshots[token] = state
        if msg.meta.get("run_key"):
            path = self._snapshot_path(msg.meta["name"], msg.meta["run_key"], token)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(state, tmp)
            tmp.replace(path)
        return "ok", {}, {}

    def on_restore(self, msg: Message):
        st, token = self.towers[msg.meta["name"]], int(msg.meta["token"])
        state = st.snapshots.get(token)
        if state is None and msg.meta.get("run_key"):
            state = torch.load(self._snapshot_path(msg.meta["name"], msg.meta["run_key"], token))
        if state is None:
            raise KeyError(f"no snapshot {token} of tower {msg.meta['name']}")
        st.tower.load_state_dict(state)
        return "ok", {}, {}

    def on_privacy_request(self, msg: Message):
        st = self.towers[msg.meta["name"]]
        r = int(st.releases.max(initial=0))
        sigma, delta = float(st.cfg.get("noise_multiplier") or 0.0), float(msg.meta.get("delta", 1e-5))
        rep = privacy_report(r, sigma, st.cfg.get("clip_norm"), delta)  # the releases of the most-released user
        return "privacy", {}, {"max_releases": r, **{k: (float(v) if math.isfinite(v) else -1.0)
                                                      for k, v in rep.items() if k != "releases"}}

    def serve(self, endpoint: Endpoint) -> None:
        """Answer messages until ``shutdown``; failures are reported to A as ``error`` messages."""
        while True:
            msg = endpoint.recv()
            if msg.type == "shutdown":
                endpoint.send("ok")
                return
            try:
                reply = getattr(self, f"on_{msg.type}")(msg)
            except Exception as err:  # report, keep serving: A decides what to do
                endpoint.send("error", error=f"{type(err).__name__}: {err}\n{traceback.format_exc()[-800:]}")
                continue
            if reply is not None:
                endpoint.send(reply[0], reply[1], **reply[2])


def _party_b_main(table_path: str, conn, n_threads: int) -> None:
    set_threads(n_threads)
    PartyB(table_path).serve(Endpoint("B", conn, keep_payloads=False))


class PartyBHandle:
    """A's handle on a running party B: its channel endpoint, and how to stop it."""

    def __init__(self, endpoint: Endpoint, worker: Any, party: PartyB | None = None):
        self.endpoint, self.worker, self.party = endpoint, worker, party

    def close(self) -> None:
        """Ask B to stop and wait for it."""
        if self.worker.is_alive():
            self.endpoint.request("shutdown", expect="ok")
            self.worker.join(timeout=30)

    def __enter__(self) -> PartyBHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_party_b(table_path: str | Path, mode: str = "process", n_threads: int = 1, keep_payloads: bool = True,
                  inspectors: list | None = None) -> PartyBHandle:
    """Start party B on its own table. ``mode="process"``: a spawned process and a pipe (no shared Python
    objects); ``mode="thread"``: a thread behind an in-process byte channel (tests; ``handle.party`` is
    then reachable for white-box checks, never by party A's code)."""
    if mode == "process":
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        a_conn, b_conn = ctx.Pipe(duplex=True)
        worker = ctx.Process(target=_party_b_main, args=(str(table_path), b_conn, n_threads), daemon=True)
        worker.start()
        b_conn.close()
        return PartyBHandle(Endpoint("A", a_conn, keep_payloads, inspectors), worker)
    if mode != "thread":
        raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
    a_t, b_t = queue_pair()
    party = PartyB(table_path)
    worker = threading.Thread(target=party.serve, args=(Endpoint("B", b_t, keep_payloads=False),), daemon=True)
    worker.start()
    return PartyBHandle(Endpoint("A", a_t, keep_payloads, inspectors), worker, party)
