"""Vertical federated learning between party A (music) and party B (another business).

* :mod:`.channel` — typed messages serialised to bytes, logged, inspected;
* :mod:`.psi` — sample alignment by ECDH private set intersection (openmined-psi);
* :mod:`.party_b` — party B's process: features, user tower, split-learning handlers, Gaussian noise;
* :mod:`.split` — party A's proxy of B's tower (an autograd function across the channel);
* :mod:`.audit` — byte-level checks that no raw feature value (verbatim or trivially re-encoded) or
  non-overlapping id crosses the channel (what that proves and does not: the module docstring);
* :mod:`.privacy` — the (epsilon, delta) accounting of B's noisy releases; :mod:`.probe` — what B's
  embeddings reveal about B's raw features (a linear probe);
* :mod:`.coldstart`, :mod:`.pipeline` — party A's cold-start experiment (notebook 07).

Split learning: Vepakomma et al., *Split learning for health*, 2018. Two-tower retrieval: Yi et al.,
RecSys 2019; DSSM: Huang et al., CIKM 2013; MMoE: Ma et al., KDD 2018.
"""

from .audit import ChannelAuditor
from .channel import Endpoint, LogEntry, Message, decode, encode
from .party_b import PartyB, start_party_b
from .privacy import privacy_report, zcdp_epsilon
from .psi import client_align
from .split import RemoteUserTower

__all__ = ["ChannelAuditor", "Endpoint", "LogEntry", "Message", "PartyB", "RemoteUserTower", "client_align",
           "decode", "encode", "privacy_report", "start_party_b", "zcdp_epsilon"]
