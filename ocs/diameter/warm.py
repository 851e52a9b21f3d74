"""The codec's compiled kernels (framing, the CCR decoder, the CCA
encoder), compiled or loaded from numba's cache before the server accepts
a connection (`ocs/kernels.py` runs every package's warm-up).

numba compiles a function again for each new set of argument types, so
the calls pass the record dtypes the charging loop decodes into and
encodes from. Those belong to the engine: the caller hands them in, and
the codec imports nothing of charging.
"""
from __future__ import annotations

import numpy as np

from . import fastcca, fastccr, message

# the dispatchers `warm_up` calls: their cache tells a cold start from a warm one
KERNELS = (message._frame_ends, fastccr._decode_all, fastccr._write_keys, fastcca._encode)


def warm_up(mscc: np.dtype, request: np.dtype) -> None:
    """`mscc`, `request`: the engine's MSCC and REQUEST record dtypes."""
    message.split_frames(bytearray(b"\x01\x00\x00\x14" + bytes(16)))
    buf, frames, msccs, _ = fastccr.decode_batch([bytes(20)], mscc)
    fastccr.duplicate_keys(buf, frames)
    fastcca.encode_batch(buf, frames, np.zeros(1, request), msccs, np.zeros(1, np.int64), b"", 0)
