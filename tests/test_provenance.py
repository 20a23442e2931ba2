"""Clean provenance (issue 16): every committed record names a commit of this history, a dirty
one only when marked allow_dirty; no absolute paths; the driver refuses a dirty tree."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from trs_lib import paths

from trs_lib import provenance, records
from trs_lib.companion import tables
from trs_lib.companion import reproduce as D

ROOT = paths.project_root()
RESULTS = ROOT / "results"
# an absolute path of a machine: /home/..., /work/..., /tmp/..., /root/..., /Users/..., C:\...
ABSOLUTE = re.compile(r"(?<![\w.])(/(home|work|tmp|root|Users|mnt|scratch|private)/|[A-Z]:\\\\)")


def _git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def _committed_records():
    return records.load_records(RESULTS, warn=lambda m: None)


def test_every_record_names_a_commit_of_this_history():
    if _git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("not a git work tree")
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        fetched = _git("fetch", "--unshallow")   # the records name older commits: fetch them
        if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            pytest.fail("shallow clone: the records' commits are not in it and `git fetch "
                        f"--unshallow` failed (exit {fetched.returncode}: {(fetched.stderr or fetched.stdout).strip()[:200]}); "
                        "clone with full history to check provenance")
    bad = []
    for key, rec in _committed_records().items():
        prov = rec["provenance"]
        commit = str(prov.get("git_commit", "unknown"))
        sha = commit.removesuffix("-dirty")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            bad.append(f"{key}: commit {commit!r} is not a commit id")
        elif _git("merge-base", "--is-ancestor", sha, "HEAD").returncode != 0:
            bad.append(f"{key}: commit {sha[:12]} is not in this branch's history")
        elif commit.endswith("-dirty") and not prov.get("allow_dirty"):
            bad.append(f"{key}: written from a dirty tree ({sha[:12]}-dirty) without --allow-dirty")
    assert not bad, "\n".join(bad)


def test_records_and_their_notebooks_hold_no_absolute_paths():
    """Records hold relative paths only. The pre-regrid records (marked allow_dirty) were
    written before the driver relativised notebooks and are exempt until the regrid."""
    bad = []
    for key, rec in _committed_records().items():
        rec = {k: v for k, v in rec.items() if k != "_path"}
        if provenance.is_dirty(rec):
            continue
        kind, name = key.split("/", 1)
        texts = {key: json.dumps(rec)}
        nb = RESULTS / kind / f"{name}.ipynb"
        if nb.is_file():
            texts[str(nb.relative_to(ROOT))] = nb.read_text(encoding="utf-8")
        for where, text in texts.items():
            m = ABSOLUTE.search(text)
            if m:
                bad.append(f"{where}: ...{text[max(0, m.start() - 40):m.end() + 40]}...")
    assert not bad, "\n".join(bad)


def test_executed_book_notebooks_hold_no_absolute_paths():
    """The committed, executed chapters (notebooks/*.ipynb) show no path of the machine that ran
    them (messages print paths relative to the project, trs_lib.paths.display_path)."""
    bad = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = nb.read_text(encoding="utf-8")
        for m in ABSOLUTE.finditer(text):
            bad.append(f"{nb.name}: ...{text[max(0, m.start() - 40):m.end() + 40]}...")
    assert not bad, "\n".join(bad[:10])


def test_display_path_is_relative_inside_the_project(tmp_path):
    assert paths.display_path(ROOT / "runs" / "x") == str(Path("runs") / "x")
    assert paths.display_path(tmp_path) == str(tmp_path.resolve())


def test_absolute_path_pattern_catches_what_it_should():
    assert ABSOLUTE.search('"run /work/main/runs/x is complete"')
    assert ABSOLUTE.search('"input_path": "/home/u/notebooks/evaluate.ipynb"')
    assert not ABSOLUTE.search('"run_dir": "runs/trs-mnist5k-abc", "out": "results/eval/x.json"')


def test_relativize_notebook_removes_the_project_root(tmp_path):
    nb = tmp_path / "n.ipynb"
    nb.write_text(json.dumps({"metadata": {"papermill": {"input_path": f"{tmp_path}/notebooks/e.ipynb"}},
                              "cells": [{"outputs": [{"text": f"run {tmp_path}/runs/a is complete"}]}]}))
    provenance.relativize_notebook(nb, tmp_path)
    text = nb.read_text()
    assert str(tmp_path) not in text and "notebooks/e.ipynb" in text and "run runs/a" in text


def _git_repo(tmp_path):
    def g(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    g("init", "-q")
    g("config", "user.email", "t@t")
    g("config", "user.name", "t")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text("{}")
    g("add", ".")
    g("commit", "-q", "-m", "init")
    return g


def test_dirty_tree_is_refused_naming_the_files_unless_allowed(tmp_path):
    _git_repo(tmp_path)
    assert provenance.check_clean_tree(tmp_path) == []
    (tmp_path / "results" / "r.json").write_text('{"new": 1}')   # records do not count
    (tmp_path / "results" / "new.json").write_text("{}")
    assert provenance.dirty_files(tmp_path) == []
    (tmp_path / "code.py").write_text("x = 2\n")
    (tmp_path / "extra.py").write_text("")
    with pytest.raises(provenance.DirtyTreeError, match=r"2 changed file\(s\): code.py, extra.py"):
        provenance.check_clean_tree(tmp_path)
    assert provenance.check_clean_tree(tmp_path, allow_dirty=True) == ["code.py", "extra.py"]
    # records going outside the project (a test's, a benchmark's) are not the committed store
    assert provenance.check_clean_tree(tmp_path, results_root=tmp_path.parent / "elsewhere") == []
    assert provenance.git_commit(tmp_path).endswith("-dirty")


def test_mark_allow_dirty_marks_only_dirty_commits():
    rec = provenance.mark_allow_dirty({"provenance": {"git_commit": "a" * 40 + "-dirty"}})
    assert rec["provenance"]["allow_dirty"] is True and provenance.is_dirty(rec)
    clean = provenance.mark_allow_dirty({"provenance": {"git_commit": "a" * 40}})
    assert "allow_dirty" not in clean["provenance"] and not provenance.is_dirty(clean)


def test_driver_cli_refuses_a_dirty_tree(tmp_path, monkeypatch, capsys):
    """The driver writing into the project's results/ from a dirty tree exits 2 naming the
    files, before running anything."""
    monkeypatch.setenv("TRS_RESULTS_DIR", str(ROOT / "results"))
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(provenance, "dirty_files", lambda root=None: ["trs_lib/changed.py"])
    monkeypatch.setattr(D, "_is_done", lambda cell, root=None: False)  # whatever results/ holds
    ran = []
    monkeypatch.setattr(D, "run_cell", lambda *a, **k: ran.append(a) or Path("x"))
    assert D.main(["--tables", "fig2"]) == 2
    assert "trs_lib/changed.py" in capsys.readouterr().err and not ran


# ---------------------------------------------------------------- make repro-check
def test_repro_check_compare_and_missing_record(tmp_path, monkeypatch):
    from trs_lib.companion import repro_check
    old = {"metrics": {"n_test": 100, "clean_accuracy": 0.95, "rows": [
        {"key": "worst_case:linf/eps=0.1", "accuracy": 0.6, "ci95": [0.5, 0.69], "correct": "1" * 60 + "0" * 40},
        {"key": "worst_case:linf/eps=0.2", "accuracy": 0.1, "correct": "1" * 10 + "0" * 90}]}}
    new = {"metrics": {"n_test": 100, "clean_accuracy": 0.96, "rows": [
        {"key": "worst_case:linf/eps=0.1", "accuracy": 0.62, "correct": "1" * 62 + "0" * 38},
        {"key": "worst_case:linf/eps=0.2", "accuracy": 0.3, "correct": "1" * 30 + "0" * 70}]}}
    rows = repro_check.compare(old, new)
    assert [r["inside"] for r in rows] == [True, True, False]  # 0.3 is outside Wilson(10, 100)
    assert rows[1]["points_changed"] == 2 and rows[2]["points_changed"] == 20
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path))
    assert repro_check.main(["--column", "trs"]) == 2  # nothing committed to check against
