"""Project-wide rules: notebook pairs in sync, no hard-coded CUDA, no sys.path hacks."""
import json
import pathlib
import re

import jupytext
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_pair_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired.name} missing: run jupytext --to ipynb --update {source.name}"
    expected = jupytext.read(source)
    actual = jupytext.read(paired)
    cells = lambda nb: [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]
    assert cells(actual) == cells(expected), f"{source.name} and {paired.name} have drifted"
    assert actual.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_carry_outputs(source):
    nb = json.loads(source.with_suffix(".ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert any(c.get("outputs") for c in code), f"{source.name}: executed outputs missing"
    assert all(c.get("execution_count") is not None for c in code if c["source"]), \
        f"{source.name}: some code cells were never executed"


def _python_files():
    for folder in ("trs_lib", "notebooks", "tests", "benchmarks"):
        yield from (ROOT / folder).rglob("*.py")


def test_no_hard_coded_cuda_or_sys_path_hacks():
    offenders = []
    for path in _python_files():
        if path.name == "test_project.py":
            continue
        text = path.read_text()
        if re.search(r"\.cuda\(\)", text) or re.search(r"sys\.path\.(append|insert)", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_no_pickle_loading_of_checkpoints():
    for path in (ROOT / "trs_lib").rglob("*.py"):
        text = path.read_text()
        assert "torch.load(" not in text, path
