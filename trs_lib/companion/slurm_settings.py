"""The Slurm settings of the driver's jobs: time, memory, partition, GPUs and extra sbatch
options, read from the command line or a TOML file, and checked against the cluster before
anything is submitted."""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from dataclasses import dataclass, field, fields

__all__ = ["ExecutorError", "SlurmSettings", "parse_time", "check_mem", "parse_extra",
           "load_config", "check_cluster"]

# sbatch options the driver sets itself: --slurm-extra may not override them.
_OWN_OPTIONS = frozenset({"dependency", "array", "output", "error", "job-name", "partition", "time",
                          "mem", "gpus-per-node", "cpus-per-task", "signal", "open-mode"})
_TIME_FORMATS = ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS")


class ExecutorError(ValueError):
    """Bad executor settings or no usable Slurm: raised before anything is submitted."""


# ---------------------------------------------------------------------- settings
def parse_time(value) -> int:
    """A Slurm time limit (``--time``) in whole minutes, rounded up.

    Slurm's formats: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.
    """
    s = str(value).strip()
    minutes, ok = 0, False
    if m := re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?(?::(\d+))?", s):
        d, h, mi, se = (int(x or 0) for x in m.groups())
        ok = h < 24 and mi < 60 and se < 60
        minutes = d * 1440 + h * 60 + mi + (se > 0)
    elif m := re.fullmatch(r"(\d+)(?::(\d+))?(?::(\d+))?", s):
        parts = [int(x) for x in m.groups() if x is not None]
        h, mi, se = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        ok = se < 60 and (len(parts) < 3 or mi < 60)
        minutes = h * 60 + mi + (se > 0)
    if ok and minutes > 0:
        return minutes
    raise ExecutorError(f"invalid time limit {value!r}: use one of Slurm's formats "
                        f"{', '.join(_TIME_FORMATS)} (e.g. 30, 4:00:00, 2-00:00:00), above zero")


def check_mem(value) -> str:
    """A Slurm memory request (``--mem``): a whole number with an optional unit K, M, G or T."""
    s = str(value).strip().upper().removesuffix("B")
    if not re.fullmatch(r"[1-9]\d*[KMGT]?", s):
        raise ExecutorError(f"invalid memory {value!r}: a whole number with an optional unit "
                            "K, M, G or T, e.g. 16G or 4000M")
    return s


def parse_extra(items) -> dict:
    """``--slurm-extra KEY=VALUE ...`` (sbatch's long options without ``--``) as a dict; a bare
    ``KEY`` is a flag."""
    out = {}
    for item in items or ():
        key, sep, val = str(item).lstrip("-").partition("=")
        key = key.strip()
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", key):
            raise ExecutorError(f"invalid --slurm-extra item {item!r}: use sbatch's long option "
                                "names as KEY=VALUE, e.g. account=myproj qos=high")
        if key.replace("_", "-") in _OWN_OPTIONS:
            raise ExecutorError(f"--slurm-extra {key!r}: the driver sets this option itself; "
                                f"use its own flag (--partition, --time, --mem, --gpus-per-job, "
                                f"--cpus-per-job) or leave it out")
        out[key.replace("-", "_")] = val if sep else True
    return out


@dataclass(frozen=True)
class SlurmSettings:
    """What every job asks Slurm for (``--slurm-config`` file, then the command line)."""

    partition: str | None = None      # None: the cluster's default partition
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    time: str = "24:00:00"            # per job; a training that reaches it is requeued and resumes
    mem: str | None = None            # None: the partition's default
    extra: dict = field(default_factory=dict)   # further sbatch options
    array_parallelism: int = 64

    def __post_init__(self):
        parse_time(self.time)
        if self.mem is not None:
            check_mem(self.mem)
        for name, lo in (("gpus_per_job", 0), ("cpus_per_job", 1), ("array_parallelism", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ExecutorError(f"invalid {name} {v!r}: a whole number >= {lo}")
        if self.partition is not None and not re.fullmatch(r"[A-Za-z0-9_.,-]+", self.partition):
            raise ExecutorError(f"invalid partition {self.partition!r}: a Slurm partition name")

    def sbatch_parameters(self) -> dict:
        """Parameters of ``submitit.SlurmExecutor``."""
        p = {"time": parse_time(self.time), "cpus_per_task": self.cpus_per_job,
             "array_parallelism": self.array_parallelism}
        if self.partition:
            p["partition"] = self.partition
        if self.gpus_per_job:
            p["gpus_per_node"] = self.gpus_per_job
        if self.mem:
            p["mem"] = check_mem(self.mem)
        extra = {"kill-on-invalid-dep": "yes", **{k.replace("_", "-"): v
                                                  for k, v in self.extra.items()}}
        p["additional_parameters"] = {k.replace("-", "_"): v for k, v in extra.items()}
        return p

    def sbatch_flags(self) -> list[str]:
        """The same settings as sbatch flags (for ``sbatch --test-only``)."""
        p = self.sbatch_parameters()
        flags = [f"--time={p['time']}", f"--cpus-per-task={p['cpus_per_task']}"]
        if "partition" in p:
            flags.append(f"--partition={p['partition']}")
        if "gpus_per_node" in p:
            flags.append(f"--gpus-per-node={p['gpus_per_node']}")
        if "mem" in p:
            flags.append(f"--mem={p['mem']}")
        for k, v in p["additional_parameters"].items():
            k = k.replace("_", "-")
            flags.append(f"--{k}" if v is True else f"--{k}={v}")
        return flags


def load_config(path) -> dict:
    """A Slurm settings file (TOML): top-level keys or a ``[slurm]`` table with the fields of
    :class:`SlurmSettings` (``extra`` a table of sbatch options)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ExecutorError(f"Slurm config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ExecutorError(f"Slurm config file {path} is not valid TOML: {err}") from None
    data = data.get("slurm", data)
    allowed = {f.name for f in fields(SlurmSettings)}
    bad = sorted(set(data) - allowed)
    if bad:
        raise ExecutorError(f"Slurm config file {path}: unknown keys {bad}; allowed: {sorted(allowed)}")
    if "extra" in data:
        data["extra"] = parse_extra(f"{k}={v}" for k, v in data["extra"].items())
    return data


def check_cluster(settings: SlurmSettings, which=shutil.which, run=subprocess.run) -> None:
    """One clear error before anything is submitted: no Slurm client, an unknown partition, or
    settings the cluster refuses (``sbatch --test-only``: time limit above the partition's,
    GPUs it does not have, ...)."""
    missing = [c for c in ("sbatch", "squeue", "sinfo") if which(c) is None]
    if missing:
        raise ExecutorError(f"--executor slurm needs Slurm's commands, and {', '.join(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} not on PATH; run on a "
                            "Slurm login node, or use --executor local")
    res = run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise ExecutorError(f"sinfo failed, is the Slurm controller reachable? {res.stderr.strip()}")
    partitions = sorted({p.strip() for p in res.stdout.split() if p.strip()})
    if settings.partition and settings.partition not in partitions:
        raise ExecutorError(f"unknown partition {settings.partition!r}; this cluster's "
                            f"partitions: {partitions}")
    res = run(["sbatch", "--test-only", *settings.sbatch_flags(), "--wrap", "true"],
              capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise ExecutorError(f"Slurm refuses these job settings ({' '.join(settings.sbatch_flags())}): "
                            f"{res.stderr.strip() or res.stdout.strip()}")
