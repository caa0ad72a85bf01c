"""A suspect behind KServe's Python model server, on loopback: V1 and Open Inference Protocol
V2 REST on one port.

    python -m benchmarks.deployments.kserve_suspect CHECKPOINT --http_port 8080

- ``POST /v1/models/suspect:predict``: ``{"instances": [...]}`` of base64 PNGs, bare or as
  ``{"b64": ...}`` / ``{"data": ...}``; answers ``{"predictions": [class index, ...]}``.
- ``POST /v2/models/suspect/infer``: one FP32 input ``[N, 3, 32, 32]`` of [0, 1] pixels (or
  ``[N, 32, 32, 3]``); answers the logits ``[N, classes]`` as output ``logits``.

The checkpoint is an nf-dist classifier (safetensors: loading runs no code). KServe binds every
interface (it is made for a pod); this launcher binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import io
from typing import Any

import numpy as np
import torch
import uvicorn
from PIL import Image

MODEL_NAME = "suspect"


def _loopback_only() -> None:
    """KServe's REST server passes host="0.0.0.0" to uvicorn.Config: bind loopback instead."""
    from kserve.protocol.rest import server

    class LoopbackConfig(uvicorn.Config):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = "127.0.0.1"
            super().__init__(*args, **kwargs)

    server.uvicorn.Config = LoopbackConfig  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    known, _ = parser.parse_known_args()  # KServe reads --http_port and the rest itself
    _loopback_only()
    import kserve
    from kserve import InferOutput, InferRequest, InferResponse

    from nf_dist.models.checkpoint import load_classifier

    classifier, _ = load_classifier(known.checkpoint)
    classifier.eval()

    class Suspect(kserve.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(MODEL_NAME)
            self.ready = True

        @torch.no_grad()
        def _logits(self, pixels: np.ndarray) -> np.ndarray:
            return classifier(torch.from_numpy(pixels).float()).numpy()  # type: ignore[no-any-return]

        async def predict(
            self, payload: Any, headers: Any = None, response_headers: Any = None
        ) -> Any:
            if isinstance(payload, InferRequest):
                x = payload.inputs[0].as_numpy().astype(np.float32)
                if x.shape[-1] == 3:  # NHWC -> NCHW
                    x = x.transpose(0, 3, 1, 2)
                logits = self._logits(np.ascontiguousarray(x))
                output = InferOutput("logits", list(logits.shape), "FP32", logits.tolist())
                return InferResponse(payload.id or "0", MODEL_NAME, [output])
            images = [_decode(instance) for instance in payload["instances"]]
            x = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255
            return {"predictions": [int(v) for v in self._logits(x).argmax(1)]}

    kserve.ModelServer(enable_grpc=False, workers=1).start([Suspect()])


def _decode(instance: Any) -> np.ndarray:
    if isinstance(instance, dict):
        instance = instance.get("b64", instance.get("data"))
    with Image.open(io.BytesIO(base64.b64decode(instance)), formats=["PNG"]) as image:
        return np.asarray(image.convert("RGB"))


if __name__ == "__main__":
    main()
