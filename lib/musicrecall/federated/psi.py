"""Sample alignment by private set intersection (ECDH-PSI, OpenMined ``openmined-psi`` 2.0.6).

The protocol (Meadows 1986; Huberman, Franklin & Hogg, EC 1999; the OpenMined implementation of
Angelou et al., *Asymmetric Private Set Intersection with Applications to Contact Tracing and Private
Vertical Federated Machine Learning*, 2020) over elliptic-curve Diffie-Hellman:

1. the **client** (party A) sends its ids blinded with its secret key ``H(x)^a``;
2. the **server** (party B) returns them double-blinded ``H(x)^{ab}`` (in the client's order) and its
   own ids blinded with its key ``H(y)^b`` (the *setup*, shuffled by the library);
3. the client raises the setup to ``a`` and matches: it learns which of *its own* ids are in both sets.

What each side learns: the client learns the intersection and the *size* of the server's set; the
server learns the *size* of the client's set. Neither learns an id outside the intersection. Party A
then tells B the aligned ids (the intersection, which B holds anyway) in the order used for training.
The RAW data structure is used so the intersection is exact (no Bloom-filter false positives).
"""

from __future__ import annotations

import numpy as np
import private_set_intersection.python as psi

from musicrecall.federated.channel import Endpoint


def blob(data: bytes) -> np.ndarray:
    """Opaque bytes as a uint8 array (the channel's type for serialised protobufs)."""
    return np.frombuffer(data, dtype=np.uint8)


def encode_keys(keys: list[str]) -> np.ndarray:
    """Ids as one newline-separated uint8 blob."""
    return blob("\n".join(keys).encode())


def decode_keys(arr: np.ndarray) -> list[str]:
    """Inverse of :func:`encode_keys`."""
    text = arr.tobytes().decode()
    return text.split("\n") if text else []


def server_reply(server_keys: list[str], request: bytes, n_client: int) -> tuple[bytes, bytes]:
    """Party B's side: ``(setup, response)`` protobuf bytes for the client's blinded ``request``."""
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(0.0, n_client, server_keys, psi.DataStructure.RAW)
    req = psi.Request()
    req.ParseFromString(request)
    return setup.SerializeToString(), server.ProcessRequest(req).SerializeToString()


def client_align(endpoint: Endpoint, keys: list[str]) -> np.ndarray:
    """Party A's side: run PSI with the peer over ``endpoint``; return sorted indices into ``keys`` of the
    ids both parties hold, and send those ids to the peer (``psi_aligned``) so both share one order."""
    client = psi.client.CreateWithNewKey(True)
    request = client.CreateRequest(keys)
    reply = endpoint.request("psi_request", {"request": blob(request.SerializeToString())}, expect="psi_reply",
                             n_client=len(keys))
    setup, response = psi.ServerSetup(), psi.Response()
    setup.ParseFromString(reply.arrays["setup"].tobytes())
    response.ParseFromString(reply.arrays["response"].tobytes())
    idx = np.sort(np.asarray(client.GetIntersection(setup, response), dtype=np.int64))
    endpoint.request("psi_aligned", {"keys": encode_keys([keys[i] for i in idx])}, expect="ok")
    return idx
