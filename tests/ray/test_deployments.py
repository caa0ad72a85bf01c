"""One suspect served five ways (``nf-dist serve``, KServe's model server over Open Inference
Protocol V2 and V1, a TorchServe-style raw-image API, a Ray Serve deployment taking multipart
uploads) gets the verdict, matches and p-value its model file gets; an API that wants 224 x 224
images gets them, upsampled as declared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.deployments import five_ways, free_port, launched
from nf_dist.config import from_dict
from nf_dist.errors import NfDistError
from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set
from nf_dist.models.checkpoint import load_classifier
from nf_dist.models.inference import predict
from nf_dist.pipelines.verify import VerifyConfig, run_verify
from nf_dist.verification.http import EndpointConfig, HttpOracle

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(scope="module")
def fingerprints(tiny_zoo: dict, tmp_path_factory: pytest.TempPathFactory) -> str:
    """30 images whose expected labels are the source's: the fine-tuned copy matches most."""
    source, _ = load_classifier(tiny_zoo["positive_uris"][0])
    images = np.random.default_rng(7).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    labels = predict(source, images)
    path = str(tmp_path_factory.mktemp("deployments") / "set.parquet")
    save_fingerprint_set(FingerprintSet(images, labels, (labels + 1) % 10), path)
    return path


def test_five_deployments_give_the_verdict_of_the_model_file(
    tiny_zoo: dict, fingerprints: str, tmp_path: Path
) -> None:
    suspect = tiny_zoo["positive_uris"][1]
    base = {"fingerprints": fingerprints, "calibration": tiny_zoo["negative_uris"]}

    def verify(spec: dict, name: str) -> tuple:
        config = {**base, "suspects": [spec], "evidence_dir": str(tmp_path / name)}
        row = run_verify(from_dict(VerifyConfig, config))["suspects"][0]
        return row["matching_rate"], row["p_value"], row["stolen"]

    expected = verify({"file": {"uri": suspect}}, "file")
    assert 0 < expected[0] < 1, "an informative suspect: some fingerprints match, some do not"
    with five_ways(suspect) as endpoints:
        got = {way: verify({"endpoint": endpoint}, way) for way, endpoint in endpoints.items()}
    assert got == dict.fromkeys(endpoints, expected)


def test_an_api_that_wants_224_pixels_gets_the_declared_upsampling(
    tiny_zoo: dict, fingerprints: str
) -> None:
    from nf_dist.fingerprint.fingerprint_set import load_fingerprint_set

    images = load_fingerprint_set(fingerprints).images
    source, _ = load_classifier(tiny_zoo["positive_uris"][0])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["-m", "nf_dist.cli", "serve", tiny_zoo["positive_uris"][0], "--port", str(port)]
    with launched([*argv, "--image-size", "224"], f"{url}/health"):
        plain = EndpointConfig(url=f"{url}/predict", cover_ratio=0, max_retries=0)
        oracle = HttpOracle(plain, images[:0])
        with pytest.raises(NfDistError, match="is 32 x 32; this model takes 224 x 224"):
            oracle(images)
        oracle.close()
        declared = from_dict(
            EndpointConfig, {"url": f"{url}/predict", "cover_ratio": 0, "image": {"size": 224}}
        )
        oracle = HttpOracle(declared, images[:0])
        answers = oracle(images)
        oracle.close()
    # The server samples what it got back down to 32 x 32 with the same bilinear resize: an
    # upsampling by 7 comes back pixel for pixel, so every label is the source's own.
    np.testing.assert_array_equal(answers, predict(source, images))
