"""A suspect answering as TorchServe's native inference API does, on loopback.

    python -m benchmarks.deployments.torchserve_like CHECKPOINT --port 8081

``POST /predictions/suspect`` with the image file as the body answers the five best classes as
``{"class name": probability, ...}`` (TorchServe's image classifier handler with an
``index_to_name.json``). ``GET /ping`` answers ``{"status": "Healthy"}``. Written on the
standard library's threading HTTP server: no TorchServe (a Java server) is installed here.
"""

from __future__ import annotations

import argparse
import io
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch
from PIL import Image

from nf_dist.data.readers import CIFAR10_CLASSES
from nf_dist.models.checkpoint import load_classifier

MAX_BODY_BYTES = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_classifier(args.checkpoint)
    model.eval()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            self._answer(200, {"status": "Healthy"} if self.path == "/ping" else {})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/predictions/suspect" or not 0 < length <= MAX_BODY_BYTES:
                self._answer(400, {"code": 400, "message": "POST an image to /predictions/suspect"})
                return
            try:
                with Image.open(io.BytesIO(self.rfile.read(length)), formats=["PNG"]) as image:
                    pixels = np.asarray(image.convert("RGB"))
            except OSError as exc:
                self._answer(400, {"code": 400, "message": str(exc)})
                return
            x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                probabilities = model(x).softmax(1)[0]
            best = probabilities.argsort(descending=True)[:5].tolist()
            self._answer(200, {CIFAR10_CLASSES[i]: float(probabilities[i]) for i in best})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
