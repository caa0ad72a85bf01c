"""A suspect deployed on Ray Serve as many teams deploy a classifier: a FastAPI ingress that
takes an uploaded image (multipart field ``file``) and answers Hugging Face-style
``[{"label": class name, "score": probability}, ...]``, the three best first.

    url = deploy(CHECKPOINT, port)   # in a process already connected to Ray
    ...                              # POST {url} with a multipart form
    shutdown()

Ray Serve's HTTP proxy binds 127.0.0.1 on ``port``; the replica asks for no CPU (it shares the
test cluster). The checkpoint is an nf-dist classifier (safetensors: loading runs no code).
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoint's UploadFile annotation
# at run time, inside the replica, where string annotations are not resolved.
import io

import numpy as np
import torch
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image
from ray import serve

from nf_dist.data.readers import CIFAR10_CLASSES
from nf_dist.models.checkpoint import load_classifier

APP_NAME = "nf-dist-suspect"
ROUTE = "/suspect"
api = FastAPI()


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Suspect:
    def __init__(self, checkpoint: str) -> None:
        torch.set_num_threads(1)
        self.model, _ = load_classifier(checkpoint)
        self.model.eval()

    @api.post("/classify")
    async def classify(self, file: UploadFile = File(...)) -> list[dict]:  # noqa: B008
        data = await file.read(1 << 20)
        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError as exc:
            raise HTTPException(415, f"not a PNG: {exc}") from None
        if pixels.shape != (32, 32, 3):
            raise HTTPException(422, f"expected 32 x 32 pixels, got {pixels.shape[:2]}")
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            probabilities = self.model(x).softmax(1)[0]
        best = probabilities.argsort(descending=True)[:3].tolist()
        return [{"label": CIFAR10_CLASSES[i], "score": float(probabilities[i])} for i in best]


def deploy(checkpoint: str, port: int) -> str:
    """Deploy the suspect; returns its URL."""
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = Suspect.bind(checkpoint)  # type: ignore[attr-defined]  # added by @serve.deployment
    serve.run(app, name=APP_NAME, route_prefix=ROUTE)
    return f"http://127.0.0.1:{port}{ROUTE}/classify"


def shutdown() -> None:
    serve.shutdown()
