"""Paths built from data stay under their root; names that become files are safe; one mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nf_dist.errors import NfDistError
from nf_dist.storage.uri import check_name, join_within, write_bytes_atomic


@pytest.mark.parametrize("name", ["source", "prune-0.1", "indep-vgg13_bn-distilled", "a" * 128])
def test_safe_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "..", "../../x", "/etc/passwd", "a/b", "a\\b", ".hidden", "a\x00b", "a" * 129, 7]
)
def test_unsafe_names_are_refused_saying_the_rule(name: object) -> None:
    with pytest.raises(NfDistError, match="not a safe name"):
        check_name(name, "model id")


@pytest.mark.parametrize("root", ["{tmp}/bench", "s3://bucket/prefix"])
@pytest.mark.parametrize("parts", [("..", "..", "x"), ("/abs",), ("models", "../../escape")])
def test_joins_refuse_to_leave_their_root(tmp_path: Path, root: str, parts: tuple) -> None:
    with pytest.raises(NfDistError, match="leave"):
        join_within(root.format(tmp=tmp_path), *parts)
    inside = join_within(root.format(tmp=tmp_path), "models", "source.json")
    assert inside.endswith("models/source.json")


def test_every_artefact_gets_one_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        target = tmp_path / "a" / "file.bin"
        write_bytes_atomic(str(target), b"x")
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        os.umask(umask)
