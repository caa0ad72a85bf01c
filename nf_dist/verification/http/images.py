"""Fingerprints as the wire carries them: image files or tensors, at the size the API expects.

Shapes: fingerprints are uint8 ``(N, 32, 32, 3)``; :func:`image_files` gives one file per image,
:func:`image_tensor` a ``(N, 3, S, S)`` or ``(N, S, S, 3)`` array (``S`` = ``encoding.size``).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import torch
from PIL import Image

from nf_dist.verification.http.config import ImageEncoding
from nf_dist.verification.oracles import Preprocessing


def png_bytes(image: np.ndarray) -> bytes:
    """One ``(H, W, 3)`` uint8 image as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def image_key(image: np.ndarray) -> str:
    """The sha256 of an image's PNG bytes: its identity in the query log (whatever the wire
    carries, the key is the 32 x 32 fingerprint's)."""
    return hashlib.sha256(png_bytes(image)).hexdigest()


def resized_pixels(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 resized to ``(N, size, size, 3)`` uint8 (unchanged at its size)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    # Preprocessing's bilinear resize on [0, 1] pixels, then back to the nearest uint8 value.
    x = Preprocessing(size=size)(images)  # (N, 3, size, size) in [0, 1]
    pixels = torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def image_files(images: np.ndarray, encoding: ImageEncoding) -> list[bytes]:
    """One PNG or JPEG file per image, at ``encoding.size``."""
    files = []
    for image in resized_pixels(images, encoding.size):
        if encoding.format == "png":
            files.append(png_bytes(image))
            continue
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=encoding.jpeg_quality)
        files.append(buffer.getvalue())
    return files


def image_content_type(encoding: ImageEncoding) -> str:
    return "image/png" if encoding.format == "png" else "image/jpeg"


def image_tensor(images: np.ndarray, encoding: ImageEncoding) -> np.ndarray:
    """The batch as the tensor an Open Inference Protocol model takes.

    FP32: ``(pixel / 255 - mean) / std`` after the bilinear resize, exactly what a model file
    with the same :class:`Preprocessing` is fed; UINT8: the resized pixels.
    """
    if encoding.datatype == "FP32":
        tensor = Preprocessing(encoding.size, encoding.mean, encoding.std)(images).numpy()
        return tensor if encoding.layout == "NCHW" else tensor.transpose(0, 2, 3, 1)
    pixels = resized_pixels(images, encoding.size)  # (N, S, S, 3)
    return pixels.transpose(0, 3, 1, 2) if encoding.layout == "NCHW" else pixels
