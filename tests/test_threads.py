"""The thread budget of musicrecall.config: passive OpenMP waiting, set before torch/faiss/lightgbm load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LIB = str(Path(__file__).resolve().parents[1] / "lib")

PROBE = """
import json, os, sys
import musicrecall.training, musicrecall.evaluation.search  # torch, faiss
from musicrecall import config
n = config.set_threads(1)
import torch
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "loaded_before": list(config._LOADED_BEFORE),
                  "torch_threads": torch.get_num_threads(), "n": n,
                  "numba": os.environ.get("NUMBA_NUM_THREADS"), "openblas": os.environ.get("OPENBLAS_NUM_THREADS")}))
"""


def _probe(extra_env: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "MUSICRECALL_WAIT_POLICY", "NUMBA_NUM_THREADS",
                        "OPENBLAS_NUM_THREADS")}
    env["PYTHONPATH"] = LIB
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_musicrecall_makes_openmp_wait_passively_before_the_runtimes_load() -> None:
    got = _probe({})
    # the policy is in the environment, and none of torch/faiss/lightgbm had loaded its runtime before it
    assert got["policy"] == "PASSIVE"
    assert got["loaded_before"] == []
    assert got["torch_threads"] == got["n"] == 1
    assert got["numba"] == "1" and got["openblas"] == "1"


def test_wait_policy_set_by_the_caller_wins() -> None:
    assert _probe({"OMP_WAIT_POLICY": "ACTIVE"})["policy"] == "ACTIVE"
