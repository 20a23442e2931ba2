"""benchmarks/gpu.py, the one-command GPU benchmark, run on the CPU at a tiny size (issue 26 item 4).

It must run without CUDA, say in its JSON that it measured a CPU, and give a positive, finite time
for every measurement and projection; a bad size argument exits non-zero naming the value.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _run(args, tmp_path, timeout=300):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _positive(value, what):
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{what}: {value!r}"
    assert math.isfinite(value) and value > 0, f"{what} = {value!r}"


def test_tiny_cpu_run_writes_a_complete_json(tmp_path):
    out = tmp_path / "gpu.json"
    proc = _run(["--steps", "1", "--points", "16", "--batch", "8", "--no-compile",
                 "--robust-points", "0", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads(out.read_text())
    for key in ("device", "device_name", "torch", "measured", "sizes", "training", "worst_case",
                "projection_180_epochs_s", "total_wall_s"):
        assert key in d, key
    assert d["device"] == "cpu" and d["measured"] == "measured a CPU, not a GPU"
    assert d["device_name"] and d["torch"]
    s = d["sizes"]
    assert (s["arch"], s["members"], s["batch"], s["steps"], s["points"]) == ("resnet20", 3, 8, 1, 16)
    assert s["steps_per_epoch"] == 50_000 // 8 and s["epochs"] == 180

    # every column x AMP setting, compile off only (--no-compile), all ran
    settings = {(r["column"], r["amp"], r["compile"]) for r in d["training"]}
    assert settings == {(c, a, False) for c in ("vanilla", "trs_seed", "trs_published") for a in ("off", "bf16")}
    for r in d["training"]:
        assert r["ok"], r
        name = f"{r['column']}/{r['amp']}"
        for key in ("warmup_s", "step_s", "eval_batch_s", "eval_epoch_s", "epoch_s", "projected_180_epochs_s"):
            _positive(r[key], f"{name} {key}")
        assert len(r["step_times_s"]) == 1
        _positive(r["step_times_s"][0], f"{name} step_times_s")
        assert r["projected_180_epochs_s"] == pytest.approx(180 * r["epoch_s"])

    wc = d["worst_case"]
    assert wc["points"] == 16 and wc["suite"] == "linf" and wc["eps"] == pytest.approx(8 / 255)
    _positive(wc["wall_s"], "worst_case wall_s")
    assert d["worst_case_full_budget"] == {"skipped": "--robust-points 0"}

    proj = d["projection_180_epochs_s"]
    assert set(proj) == {"vanilla", "trs_seed", "trs_published"}
    for col, p in proj.items():
        _positive(p["default_s"], f"{col} default_s")
        _positive(p["best_s"], f"{col} best_s")
        assert p["best_s"] <= p["default_s"]
    _positive(d["total_wall_s"], "total_wall_s")
    assert "measured a CPU, not a GPU" in proc.stdout


@pytest.mark.parametrize("args, value", [(["--steps", "0"], "0"), (["--points", "-3"], "-3"),
                                         (["--batch", "abc"], "abc")])
def test_bad_argument_exits_non_zero_naming_the_value(tmp_path, args, value):
    proc = _run([*args, "--out", str(tmp_path / "never.json")], tmp_path, timeout=120)
    assert proc.returncode != 0
    assert args[0] in proc.stderr and value in proc.stderr, proc.stderr
    assert not (tmp_path / "never.json").exists()
