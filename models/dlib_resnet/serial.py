"""dlib's binary serialization (dlib/serialize.h, dlib/float_details.h, dlib/dnn/tensor.h).

There are no type tags in the stream: the reader must know what comes next, so every method here
reads one known type and fails loudly on anything unexpected.
"""

from __future__ import annotations

import numpy as np


class FormatError(ValueError):
    """The byte stream does not hold what dlib's network layout says it should."""


class Reader:
    """Sequential reader over a dlib-serialized byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError(f"unexpected end of file at byte {self.pos} (wanted {n} more bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self, signed: bool = True) -> int:
        """An integer: control byte (low nibble = byte count, bit 0x80 = negative), then LE bytes."""
        at = self.pos
        control = self._take(1)[0]
        size = control & 0x0F
        if size < 1 or size > 8 or (control & 0x70):
            raise FormatError(f"byte {at}: 0x{control:02x} is not an integer control byte")
        value = int.from_bytes(self._take(size), "little")
        if control & 0x80:
            if not signed:
                raise FormatError(f"byte {at}: negative value where an unsigned integer was expected")
            value = -value
        return value

    def uint(self) -> int:
        return self.int(signed=False)

    def expect_int(self, value: int, what: str) -> None:
        at = self.pos
        got = self.int()
        if got != value:
            raise FormatError(f"byte {at}: {what} should be {value}, found {got}")

    def float(self) -> float:
        """A float or double: signed int64 mantissa, signed int16 exponent; value = m * 2**e."""
        mantissa = self.int()
        exponent = self.int()
        if exponent >= 32000:
            raise FormatError(f"byte {self.pos}: non-finite value (exponent {exponent}) in the weights file")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool(self) -> bool:
        at = self.pos
        b = self._take(1)
        if b not in (b"0", b"1"):
            raise FormatError(f"byte {at}: {b!r} is not a serialized bool ('0' or '1')")
        return b == b"1"

    def string(self) -> str:
        n = self.uint()
        return self._take(n).decode("ascii")

    def expect_string(self, value: str) -> None:
        at = self.pos
        got = self.string()
        if got != value:
            raise FormatError(f"byte {at}: expected layer version {value!r}, found {got!r}")

    def tensor(self) -> np.ndarray:
        """A tensor: version 2, (num_samples, k, nr, nc), then raw little-endian float32 values."""
        self.expect_int(2, "tensor version")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise FormatError(f"byte {self.pos}: negative tensor shape {shape}")
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def empty_tensor(self, what: str) -> None:
        at = self.pos
        t = self.tensor()
        if t.size:
            raise FormatError(f"byte {at}: {what} should be empty, has shape {t.shape}")

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An alias_tensor: version 1, then its shape (it holds no data)."""
        self.expect_int(1, "alias_tensor version")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]
