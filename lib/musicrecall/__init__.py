"""musicrecall."""

# First, before any submodule loads torch, faiss or lightgbm: config sets the OpenMP waiting policy
# (passive), which the runtimes read only when they load (see musicrecall.config).
from musicrecall import config as _config  # noqa: F401
