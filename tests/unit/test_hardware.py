"""The hardware facts and the precision rule: decided from the CPU's flags, which tests set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from nf_dist import hardware
from nf_dist.hardware import CpuFacts, choose_precision, machine_record

ROOT = Path(__file__).resolve().parents[2]

AVX2 = CpuFacts("AMD EPYC (Zen 3)", frozenset({"avx2", "fma"}), "AVX2", mkldnn_bf16=False)
AVX512 = CpuFacts(
    "Intel Xeon (Ice Lake)", frozenset({"avx2", "fma", "avx512f"}), "AVX512", mkldnn_bf16=False
)
AVX512_BF16 = CpuFacts(
    "Intel Xeon (Sapphire Rapids)",
    frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}),
    "AVX512",
    mkldnn_bf16=True,
)


@pytest.mark.parametrize(
    ("cpu", "expected"), [(AVX2, "fp32"), (AVX512, "fp32"), (AVX512_BF16, "bf16")]
)
def test_auto_is_bf16_only_on_cpus_with_native_bf16(cpu: CpuFacts, expected: str) -> None:
    choice = choose_precision("auto", "cpu", cpu)
    assert choice.precision == expected
    assert cpu.model in choice.reason and cpu.capability in choice.reason


def test_a_bf16_flag_without_onednn_support_is_not_native() -> None:
    # the flag alone is not enough: oneDNN must take bf16 too, or convolutions leave it
    flags_only = CpuFacts("x", frozenset({"avx512_bf16"}), "AVX512", mkldnn_bf16=False)
    assert choose_precision("auto", "cpu", flags_only).precision == "fp32"


def test_explicit_precisions_are_kept_and_emulated_bf16_says_so() -> None:
    assert choose_precision("fp32", "cpu", AVX512_BF16).precision == "fp32"
    emulated = choose_precision("bf16", "cpu", AVX2)
    assert emulated.precision == "bf16" and emulated.emulated and "emulated" in emulated.reason
    assert "slower" in emulated.reason
    assert not choose_precision("bf16", "cpu", AVX512_BF16).emulated


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        choose_precision("fp16", "cpu", AVX2)


def test_machine_record_names_the_cpu_its_flags_and_the_auto_precision() -> None:
    record = machine_record()
    assert record["cpu_model"] and isinstance(record["cpu_model"], str)
    assert set(record["cpu_flags"]) == set(hardware.FLAGS_THAT_MATTER)  # type: ignore[arg-type]
    assert record["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    native = hardware.cpu_facts().native_bf16
    assert record["auto_precision_cpu"] == ("bf16" if native else "fp32")
    json.dumps(record)  # every record is written as JSON or YAML


def test_cpu_facts_agree_with_proc_cpuinfo() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this platform")
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
    assert flags is not None
    facts = hardware.cpu_facts()
    assert set(flags.group(1).split()) <= facts.flags


def test_no_repository_config_asks_for_bf16_without_a_reason() -> None:
    """bf16 is 7-19x slower on CPUs without it: a config that fixes it must say why."""
    unexplained = []
    for path in sorted(ROOT.glob("**/*.yaml")):
        if any(part.startswith(".") or part == "runs" for part in path.relative_to(ROOT).parts):
            continue
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.search(r"precision:\s*bf16", line) and not (
                "#" in line or (number > 0 and lines[number - 1].lstrip().startswith("#"))
            ):
                unexplained.append(f"{path.relative_to(ROOT)}:{number + 1}")
    # recorded results (the configs a finished run wrote) are what they are
    unexplained = [u for u in unexplained if "/results/" not in u]
    assert unexplained == []


def test_resolving_bf16_on_a_cpu_without_it_warns_once_and_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hardware, "cpu_facts", lambda: AVX2)
    hardware._announce.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="slower than fp32"):
            assert hardware.resolve_precision("bf16", "cpu") == "bf16"
        assert hardware.resolve_precision("auto", "cpu") == "fp32"
        resolved = machine_record()["precisions_resolved"]
        assert resolved["bf16 on cpu"] == "bf16" and resolved["auto on cpu"] == "fp32"  # type: ignore[index]
    finally:
        hardware._announce.cache_clear()
        hardware._RESOLVED.clear()
