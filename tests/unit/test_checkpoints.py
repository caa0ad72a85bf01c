"""Safe checkpoints: round trip, corruption caught, pickles refused without running code."""

import json
import pickle
from pathlib import Path

import pytest
import torch

from nf_dist.errors import CheckpointError, UnsafeCheckpointError
from nf_dist.models import create_classifier
from nf_dist.models.checkpoint import load_classifier, save_classifier
from nf_dist.storage.checkpoints import load_checkpoint, save_checkpoint

MARKER = Path("/tmp/nf_dist_pwned_marker")


class RunsCode:
    """An object whose unpickling creates a file: a stand-in for a malicious checkpoint."""

    def __reduce__(self) -> tuple:
        return (MARKER.touch, ())


def test_classifier_round_trip(tmp_path: Path) -> None:
    model = create_classifier("resnet18", width=0.125, stem_stride=2).eval()
    stem = save_classifier(model, str(tmp_path / "m"), test_accuracy=0.5)
    loaded, meta = load_classifier(stem + ".safetensors")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert meta["test_accuracy"] == 0.5 and meta["model"]["arch"] == "resnet18"
    assert len(meta["sha256"]) == 64 and "nf_dist_version" in meta


def test_corrupt_weights_detected(tmp_path: Path) -> None:
    stem = save_checkpoint(str(tmp_path / "c"), {"w": torch.ones(3)}, {"kind": "x"})
    weights = Path(stem + ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(stem)


def test_missing_sidecar_means_incomplete(tmp_path: Path) -> None:
    stem = save_checkpoint(str(tmp_path / "c"), {"w": torch.ones(3)}, {"kind": "x"})
    Path(stem + ".json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(stem)


def test_wrong_architecture_named(tmp_path: Path) -> None:
    model = create_classifier("vgg13_bn", width=0.125)
    stem = save_classifier(model, str(tmp_path / "m"))
    sidecar = Path(stem + ".json")
    meta = json.loads(sidecar.read_text())
    meta["model"]["arch"] = "resnet18"
    meta.pop("sha256")
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="weights do not belong to resnet18"):
        load_classifier(stem)


@pytest.mark.parametrize("name", ["evil.pt", "evil.safetensors", "evil"])
def test_pickle_refused_and_runs_nothing(tmp_path: Path, name: str) -> None:
    MARKER.unlink(missing_ok=True)
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"weights": RunsCode()}))
    torch.save({"weights": torch.ones(1)}, tmp_path / "zip.pt")
    with pytest.raises(UnsafeCheckpointError, match="could execute"):
        load_classifier(str(path))
    with pytest.raises(UnsafeCheckpointError):
        load_classifier(str(tmp_path / "zip.pt"))
    assert not MARKER.exists(), "loading a suspect checkpoint executed code"


def test_header_byte_0x80_is_not_mistaken_for_pickle(tmp_path: Path) -> None:
    # A safetensors header length whose low byte is 0x80 must still load.
    for size in range(1, 400):
        stem = save_checkpoint(str(tmp_path / "h"), {"w" * size: torch.ones(1)}, {"kind": "x"})
        if Path(stem + ".safetensors").read_bytes()[0] == 0x80:
            break
    else:
        pytest.skip("could not produce a 0x80 header length")
    tensors, _ = load_checkpoint(stem)
    assert tensors["w" * size].tolist() == [1.0]


def test_a_named_trusted_pickle_loads_and_still_runs_no_code(tmp_path: Path, capsys) -> None:
    from nf_dist.cli import main

    model = create_classifier("resnet18", width=0.125, stem_stride=2).eval()
    stem = save_classifier(model, str(tmp_path / "ref"))
    suspect = tmp_path / "suspect.pt"
    torch.save(model.state_dict(), suspect)
    (tmp_path / "suspect.json").write_text(
        Path(stem + ".json").read_text().replace('"sha256"', '"x"')
    )
    with pytest.raises(UnsafeCheckpointError, match=f"--unsafe-allow-pickle {suspect}"):
        load_classifier(str(suspect))
    loaded, _ = load_classifier(str(suspect), unsafe_pickle=True)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))

    # Allowed or not, a pickle that carries code is refused by the weights-only loader.
    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"conv.weight": RunsCode()}))
    (tmp_path / "evil.json").write_text((tmp_path / "suspect.json").read_text())
    with pytest.raises(UnsafeCheckpointError, match="holds more than tensors"):
        load_classifier(str(evil), unsafe_pickle=True)
    assert not MARKER.exists(), "an allowed pickle executed code"

    # On the command line the flag unlocks exactly the file it names.
    fingerprints = _fingerprint_set(tmp_path, model)
    independents = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        other = create_classifier("resnet18", width=0.125, stem_stride=2)
        independents.append(save_classifier(other, str(tmp_path / f"independent{seed}")))
    verify = ["verify", fingerprints, str(suspect), "--calibrate", *independents]
    assert main([*verify, "--unsafe-allow-pickle", str(evil)]) == 2
    assert "--unsafe-allow-pickle" in capsys.readouterr().err
    assert main([*verify, "--unsafe-allow-pickle", str(suspect)]) == 0
    assert "1.000" in capsys.readouterr().out  # the source's own labels: a full match


def _fingerprint_set(folder: Path, model: torch.nn.Module) -> str:
    import numpy as np

    from nf_dist.fingerprint.fingerprint_set import FingerprintSet, save_fingerprint_set
    from nf_dist.models.inference import predict

    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = predict(model, images)
    uri = str(folder / "fp.parquet")
    save_fingerprint_set(FingerprintSet(images, labels, (labels + 1) % 10), uri)
    return uri


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": 20.0}, r"model.width must be a number in \(0, 4.0\]"),
        ({"width": float("inf")}, "model.width"),
        ({"width": "wide"}, "model.width"),
        ({"num_classes": "ten"}, "model.num_classes must be an integer"),
        ({"num_classes": 10**9}, "model.num_classes"),
        ({"stem_stride": 3}, "model.stem_stride must be 1 or 2"),
        ({"arch": "resnet1000"}, "not a known architecture"),
        ({"width": 0.25}, r"has shape .* needs"),  # a plausible lie about the weights
    ],
)
def test_a_suspects_sidecar_is_checked_before_any_model_is_built(
    tmp_path: Path, change: dict, message: str
) -> None:
    stem = save_classifier(create_classifier("resnet18", width=0.125), str(tmp_path / "m"))
    sidecar = Path(stem + ".json")
    meta = json.loads(sidecar.read_text())
    meta["model"].update(change)
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        load_classifier(stem)


@pytest.mark.parametrize("sidecar", ["[1, 2]", '"text"', '{"kind": "gan"}'])
def test_a_sidecar_that_is_not_a_classifier_object_is_refused(tmp_path: Path, sidecar: str) -> None:
    stem = save_classifier(create_classifier("resnet18", width=0.125), str(tmp_path / "m"))
    Path(stem + ".json").write_text(sidecar)
    with pytest.raises(CheckpointError, match="JSON object|kind: classifier"):
        load_classifier(stem)
