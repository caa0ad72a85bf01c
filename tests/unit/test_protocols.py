"""Each protocol's request as its servers document it, and the labels read from every answer
shape they give (Triton, KServe, MLServer, TorchServe, Hugging Face); malformed answers are
retryable problems, impossible ones clear errors."""

from __future__ import annotations

import base64
import io
import json
from email import message_from_bytes

import numpy as np
import pytest
from PIL import Image

from nf_dist.cli.parser import PROTOCOL_CHOICES
from nf_dist.config import from_dict
from nf_dist.verification.http import PROTOCOL_NAMES, PROTOCOLS, EndpointConfig
from nf_dist.verification.http.images import image_tensor, resized_pixels
from nf_dist.verification.http.problems import EndpointError, RetryableError
from nf_dist.verification.oracles import Preprocessing

IMAGES = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def protocol(**settings: object):  # type: ignore[no-untyped-def]
    config = from_dict(EndpointConfig, {"url": "http://127.0.0.1:1/x", **settings})
    return PROTOCOLS.get(config.protocol)(config)


def test_every_protocol_is_registered_and_named_by_the_cli() -> None:
    assert PROTOCOLS.names() == sorted(PROTOCOL_NAMES) == sorted(PROTOCOL_CHOICES)


def test_oip_v2_sends_the_tensor_a_model_file_would_get() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    chosen = protocol(protocol="oip-v2", image={"size": 224, "mean": mean, "std": std})
    body, content_type = chosen.encode(IMAGES)
    (tensor,) = json.loads(body)["inputs"]
    assert content_type == "application/json" and tensor["name"] == "input"
    assert tensor["shape"] == [3, 3, 224, 224] and tensor["datatype"] == "FP32"
    sent = np.asarray(tensor["data"], np.float32).reshape(tensor["shape"])
    expected = Preprocessing(224, mean, std)(IMAGES).numpy()
    np.testing.assert_array_equal(sent, expected)  # float32 survives JSON exactly


def test_oip_v2_nhwc_uint8_sends_the_pixels() -> None:
    chosen = protocol(protocol="oip-v2", image={"layout": "NHWC", "datatype": "UINT8"})
    (tensor,) = json.loads(chosen.encode(IMAGES)[0])["inputs"]
    assert tensor["shape"] == [3, 32, 32, 3] and tensor["datatype"] == "UINT8"
    np.testing.assert_array_equal(np.asarray(tensor["data"]).reshape(3, 32, 32, 3), IMAGES)


def test_resizing_to_224_is_the_bilinear_upsampling_of_the_model_file_path() -> None:
    up = resized_pixels(IMAGES, 224)
    assert up.shape == (3, 224, 224, 3) and up.dtype == np.uint8
    exact = Preprocessing(224)(IMAGES).numpy().transpose(0, 2, 3, 1) * 255
    assert np.abs(up.astype(np.float64) - exact).max() <= 0.5 + 1e-4  # rounded, not shifted
    tensor = image_tensor(IMAGES, from_dict(EndpointConfig, {"url": "http://x/"}).image)
    assert tensor.shape == (3, 3, 32, 32)


@pytest.mark.parametrize(
    ("output", "labels"),
    [
        (
            {
                "name": "logits",
                "shape": [3, 10],
                "datatype": "FP32",
                "data": list(np.eye(10)[[3, 0, 9]].ravel()),
            },
            [3, 0, 9],
        ),
        (
            {
                "name": "p",
                "shape": [3, 10],
                "datatype": "FP64",
                "data": np.eye(10)[[1, 2, 3]].tolist(),
            },
            [1, 2, 3],
        ),
        ({"name": "idx", "shape": [3], "datatype": "INT64", "data": [7, 7, 1]}, [7, 7, 1]),
        ({"name": "idx", "shape": [3, 1], "datatype": "INT32", "data": [[4], [5], [6]]}, [4, 5, 6]),
        (
            {
                "name": "cls",
                "shape": [3, 1],
                "datatype": "BYTES",
                "data": ["0.9:8:ship", "0.5:1", "0.7:2:bird"],
            },
            [8, 1, 2],
        ),
    ],
)
def test_oip_v2_reads_logits_probabilities_indices_and_triton_classification(
    output: dict, labels: list[int]
) -> None:
    answer = {"model_name": "m", "outputs": [output]}
    assert protocol(protocol="oip-v2").decode(json.dumps(answer).encode(), 3) == labels


def test_oip_v2_reads_the_named_output_and_asks_for_classification() -> None:
    chosen = protocol(protocol="oip-v2", output_name="cls", answer="classification")
    request = json.loads(chosen.encode(IMAGES)[0])
    assert request["outputs"] == [{"name": "cls", "parameters": {"classification": 1}}]
    answer = {
        "outputs": [
            {"name": "logits", "shape": [3, 10], "datatype": "FP32", "data": [0.0] * 30},
            {"name": "cls", "shape": [3, 1], "datatype": "BYTES", "data": ["1:5", "1:6", "1:7"]},
        ]
    }
    assert chosen.decode(json.dumps(answer).encode(), 3) == [5, 6, 7]
    with pytest.raises(EndpointError, match="set endpoint.output_name to one of them"):
        protocol(protocol="oip-v2", output_name="nope").decode(json.dumps(answer).encode(), 3)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (
            {"outputs": [{"shape": [2, 10], "datatype": "FP32", "data": [0.0] * 20}]},
            "shape \\[2, 10\\] for 3",
        ),
        ({"outputs": [{"shape": [3, 10], "datatype": "FP32", "data": [0.0] * 29}]}, "29 values"),
        (
            {"outputs": [{"shape": [3, 7], "datatype": "FP32", "data": [0.0] * 21}]},
            "neither one class index",
        ),
        ({"outputs": []}, "no outputs"),
        ({"error": "model not ready"}, "without a 'outputs' field"),
    ],
)
def test_oip_v2_malformed_answers_are_retryable_and_say_why(answer: dict, problem: str) -> None:
    with pytest.raises(RetryableError, match=problem):
        protocol(protocol="oip-v2").decode(json.dumps(answer).encode(), 3)


@pytest.mark.parametrize("instance", ["string", "b64", "data"])
def test_kserve_v1_wraps_each_png_as_configured(instance: str) -> None:
    body, _ = protocol(protocol="kserve-v1", instance=instance).encode(IMAGES)
    instances = json.loads(body)["instances"]
    assert len(instances) == 3
    encoded = instances[0] if instance == "string" else instances[0][instance]
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))
    np.testing.assert_array_equal(decoded, IMAGES[0])


@pytest.mark.parametrize(
    "predictions",
    [
        [3, 4, 5],
        ["cat", "deer", "dog"],
        ["3", "4", "5"],
        np.eye(10)[[3, 4, 5]].tolist(),
        [{"cat": 0.9, "dog": 0.1}, {"deer": 0.8}, {"dog": 0.7, "cat": 0.2}],
        [
            [{"label": "bird", "score": 0.1}, {"label": "cat", "score": 0.8}],
            {"label": "deer"},
            {"label": 5},
        ],
    ],
)
def test_kserve_v1_reads_labels_names_scores_and_mappings(predictions: list) -> None:
    chosen = protocol(protocol="kserve-v1", class_names=NAMES)
    assert chosen.decode(json.dumps({"predictions": predictions}).encode(), 3) == [3, 4, 5]


def test_wrong_counts_and_labels_are_named() -> None:
    chosen = protocol(protocol="kserve-v1")
    with pytest.raises(RetryableError, match="answered 2 labels in predictions for 3 images"):
        chosen.decode(b'{"predictions": [1, 2]}', 3)
    with pytest.raises(EndpointError, match="outside \\[0, 10\\)"):
        chosen.decode(b'{"predictions": [1, 2, 10]}', 3)
    with pytest.raises(EndpointError, match="list the suspect's class names"):
        chosen.decode(b'{"predictions": ["cat", "cat", "cat"]}', 3)
    with pytest.raises(EndpointError, match="answered 1000 scores per image for 10 classes"):
        chosen.decode(json.dumps({"predictions": [[0.0] * 1000] * 3}).encode(), 3)
    with pytest.raises(RetryableError, match="not JSON"):
        chosen.decode(b'{"predictions": [', 3)
    with pytest.raises(RetryableError, match="where a label belongs"):
        chosen.decode(b'{"predictions": [true, null, 1]}', 3)


@pytest.mark.parametrize(
    "answer",
    [
        b'{"cat": 0.7, "dog": 0.2, "frog": 0.1}',  # TorchServe
        b'[{"label": "cat", "score": 0.7}, {"label": "dog", "score": 0.2}]',  # Hugging Face
        b'[[{"label": "dog", "score": 0.2}, {"label": "cat", "score": 0.7}]]',
        b'{"label": "cat"}',
        b"3",
        b"cat",  # a plain-text label
        b'"cat"',
        b"[3]",
    ],
)
def test_raw_image_reads_every_single_image_answer(answer: bytes) -> None:
    assert protocol(protocol="raw-image", class_names=NAMES).decode(answer, 1) == [3]


def test_raw_image_sends_one_file_as_bytes_or_a_multipart_form() -> None:
    raw = protocol(protocol="raw-image", image={"size": 64})
    assert raw.images_per_request == 1
    body, content_type = raw.encode(IMAGES[:1])
    assert content_type == "image/png" and Image.open(io.BytesIO(body)).size == (64, 64)
    form = protocol(protocol="raw-image", body="multipart", multipart_field="image")
    body, content_type = form.encode(IMAGES[:1])
    message = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    (part,) = message.get_payload()
    assert part.get_param("name", header="content-disposition") == "image"
    decoded = np.asarray(Image.open(io.BytesIO(part.get_payload(decode=True))))
    np.testing.assert_array_equal(decoded, IMAGES[0])


def test_nfdist_reads_its_configured_fields() -> None:
    chosen = protocol(images_field="imgs", labels_field="out")
    assert list(json.loads(chosen.encode(IMAGES)[0])) == ["imgs"]
    assert chosen.decode(b'{"out": [1, 2, 3]}', 3) == [1, 2, 3]
    with pytest.raises(RetryableError, match="without a 'out' field"):
        chosen.decode(b'{"labels": [1, 2, 3]}', 3)


def test_settings_of_another_protocol_warn_and_a_token_header_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from nf_dist.errors import ConfigError

    with caplog.at_level("WARNING"):
        from_dict(
            EndpointConfig, {"url": "http://x/", "instance": "b64", "image": {"layout": "NHWC"}}
        )
    assert "read by the kserve-v1 protocol only" in caplog.text
    assert "applies to tensors (oip-v2) only" in caplog.text
    with pytest.raises(ConfigError, match="endpoint.token_env"):
        from_dict(EndpointConfig, {"url": "http://x/", "headers": {"authorization": "Bearer x"}})
    with pytest.raises(ConfigError, match="is not one of"):
        from_dict(EndpointConfig, {"url": "http://x/", "protocol": "grpc"})
