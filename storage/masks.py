"""Lossless compact encoding of binary masks for the database."""

from __future__ import annotations

import zlib

import numpy as np


def encode_mask(mask: np.ndarray) -> tuple[list[int], bytes]:
    mask = np.asarray(mask).astype(bool)
    return list(mask.shape), zlib.compress(np.packbits(mask, axis=None).tobytes(), level=6)


def decode_mask(shape: list[int], data: bytes) -> np.ndarray:
    count = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(zlib.decompress(data), dtype=np.uint8), count=count)
    return bits.reshape(shape).astype(bool)
