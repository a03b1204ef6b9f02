"""Store ``celeba64.npz`` with JPEG-compressed images, and decode such a copy back: for machines that can
take in only a little data at a time.

    python scripts/celeba_jpeg.py pack DATA/celeba64.npz COPY/celeba64_jpeg.npz [--quality 94]
    python scripts/celeba_jpeg.py unpack COPY/celeba64_jpeg.npz DIR/celeba64.npz

``pack`` encodes every 64x64 face on its own at ``--quality`` with no chroma subsampling and copies every
other field (attributes, names, partition, file names) unchanged; ``unpack`` writes a ``celeba64.npz`` that
the loaders read like the original (point ``NBHELPERS_DATA_DIR`` at ``DIR``). At quality 94 the full 15,723
faces take 39 MB instead of 179 MB and differ from the original pixels by 2.1/255 RMS. The paper-profile
CelebA results of chapters 4 and 5 under ``results/paper/`` were computed from such a copy (see its README).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from nbhelpers.core.io import save_npz_atomic  # the one atomic writer: a crash leaves no half-written file

IMAGES = "images"
JPEG, OFFSETS, QUALITY = "jpeg", "jpeg_offsets", "jpeg_quality"


def _load(path: Path, needed: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the path of {what}")
    with np.load(path, allow_pickle=False) as data:
        fields = {name: data[name] for name in data.files}
    missing = [name for name in needed if name not in fields]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ValueError(f"{path} is not {what}: it has no {names} (its fields: {sorted(fields)})")
    return fields


def pack(source: str | Path, target: str | Path, quality: int = 94) -> dict[str, float]:
    """Write ``target``: the images of ``source`` [n, 64, 64, 3] uint8 as JPEG bytes, other fields unchanged.

    Returns the packed size in bytes and the decoded images' RMS difference from the originals (0-255 units).
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    fields = _load(Path(source), (IMAGES,), "a celeba64.npz")
    images = fields.pop(IMAGES)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        shape = list(images.shape)
        raise ValueError(f"images must be uint8 [n, height, width, 3], got {images.dtype} {shape}")
    encoded, squared_error = [], 0.0
    for image in images:
        buffer = io.BytesIO()
        # subsampling=0 (4:4:4): full-resolution colour, at 64x64 every chroma pixel counts
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=0)
        encoded.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        squared_error += float(((_decode(encoded[-1]).astype(np.float64) - image) ** 2).sum())
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
    packed = {JPEG: np.concatenate(encoded), OFFSETS: offsets, QUALITY: np.int64(quality)}
    target = save_npz_atomic(Path(target), **packed, **fields)
    return {"bytes": float(target.stat().st_size), "rms": (squared_error / max(images.size, 1)) ** 0.5}


def _decode(jpeg: np.ndarray) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg.tobytes())).convert("RGB"))


def unpack(source: str | Path, target: str | Path) -> Path:
    """Decode a ``pack``ed file into a ``celeba64.npz`` at ``target`` (images [n, 64, 64, 3] uint8)."""
    fields = _load(Path(source), (JPEG, OFFSETS), "a file written by 'pack'")
    jpeg, offsets = fields.pop(JPEG), fields.pop(OFFSETS)
    fields.pop(QUALITY, None)
    bounds = zip(offsets[:-1], offsets[1:], strict=True)
    images = np.stack([_decode(jpeg[start:end]) for start, end in bounds])
    return save_npz_atomic(Path(target), **{IMAGES: images}, **fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    to_jpeg = commands.add_parser("pack", help="celeba64.npz -> a copy with JPEG images")
    to_jpeg.add_argument("source")
    to_jpeg.add_argument("target")
    to_jpeg.add_argument("--quality", type=int, default=94, help="JPEG quality, 1-100 (default 94)")
    from_jpeg = commands.add_parser("unpack", help="a packed copy -> celeba64.npz")
    from_jpeg.add_argument("source")
    from_jpeg.add_argument("target")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            stats = pack(args.source, args.target, args.quality)
            size, rms = stats["bytes"] / 1e6, stats["rms"]
            print(f"wrote {args.target}: {size:.1f} MB, {rms:.2f}/255 RMS from the original")
        else:
            print(f"wrote {unpack(args.source, args.target)}")
    except (OSError, ValueError) as err:
        print(f"celeba_jpeg.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
