"""Download a camera image in the Alpaca ImageBytes format, with a timeout, into numpy.

alpyca's own download has no timeout and a broken error path, and builds Python lists; this
issues the request itself and decodes the buffer with `numpy.frombuffer` (no per-pixel Python).

ImageBytes: a 44-byte little-endian header of eleven int32 (metadata version, error number,
client and server transaction ids, data start, image element type, transmission element type,
rank, dimension 1 (x), dimension 2 (y), dimension 3), then the pixels with Y varying fastest.
On error the bytes after the header are a UTF-8 message.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import requests

_HEADER = np.dtype("<i4")
_HEADER_BYTES = 44
# Alpaca ImageArrayElementTypes -> numpy dtype.
_ELEMENT_TYPES: dict[int, str] = {1: "<i2", 2: "<i4", 3: "<f8", 6: "u1", 8: "<u2", 9: "<u4"}
_client_transaction_ids = itertools.count(1)


class ImageBytesError(Exception):
    """The server sent an error or a buffer that is not a valid ImageBytes image.

    `transient` when asking again may well succeed: a reply cut short, an HTTP 5xx, an
    unspecific driver error (0x500 and up). A short image is never returned.
    """

    def __init__(self, message: str, error_number: int = 0, *, transient: bool = False) -> None:
        super().__init__(message)
        self.error_number = error_number
        self.transient = transient or error_number >= 0x500


def decode(buffer: bytes) -> npt.NDArray[np.generic]:
    """Decode an ImageBytes buffer to an array with axes ``(y, x)`` (or ``(y, x, plane)``)."""
    if len(buffer) < _HEADER_BYTES:
        raise ImageBytesError(
            f"reply of {len(buffer)} bytes is shorter than the header", transient=True
        )
    header = np.frombuffer(buffer, dtype=_HEADER, count=11)
    error_number, data_start = int(header[1]), int(header[4])
    if error_number != 0:
        message = buffer[_HEADER_BYTES:].decode("utf-8", errors="replace")
        raise ImageBytesError(f"device error 0x{error_number:X}: {message}", error_number)
    transmission, rank = int(header[6]), int(header[7])
    if transmission not in _ELEMENT_TYPES:
        raise ImageBytesError(f"unsupported transmission element type {transmission}")
    if rank not in (2, 3):
        raise ImageBytesError(f"unsupported image rank {rank}")
    dims = [int(d) for d in header[8 : 8 + rank]]
    dtype = np.dtype(_ELEMENT_TYPES[transmission])
    expected = data_start + int(np.prod(dims)) * dtype.itemsize
    if len(buffer) != expected:
        raise ImageBytesError(
            f"reply has {len(buffer)} bytes, header promises {expected}", transient=True
        )
    pixels = np.frombuffer(buffer, dtype=dtype, offset=data_start).reshape(dims)
    # Dimension 1 is x and varies slowest: transpose the first two axes to (y, x).
    return np.ascontiguousarray(np.swapaxes(pixels, 0, 1))


def download(
    session: requests.Session, base_url: str, device_number: int, timeout_s: float
) -> npt.NDArray[np.generic]:
    """GET ``camera/N/imagearray`` as ImageBytes; raises `requests` errors or `ImageBytesError`.

    `timeout_s` bounds both the connection and each read of the reply.
    """
    reply = session.get(
        f"{base_url}/api/v1/camera/{device_number}/imagearray",
        params={"ClientID": 1, "ClientTransactionID": next(_client_transaction_ids)},
        headers={"Accept": "application/imagebytes"},
        timeout=timeout_s,
    )
    if reply.status_code != 200:
        raise ImageBytesError(
            f"HTTP {reply.status_code}: {reply.text[:200]}", transient=reply.status_code >= 500
        )
    if not reply.headers.get("Content-Type", "").startswith("application/imagebytes"):
        # A server without ImageBytes support answers JSON; its ErrorNumber tells why.
        body = reply.json()
        number = int(body.get("ErrorNumber", 0))
        raise ImageBytesError(
            f"no ImageBytes reply (error 0x{number:X}: {body.get('ErrorMessage', '')})", number
        )
    return decode(reply.content)
