"""Project-wide rules: notebook pairs in sync, no hard-coded CUDA, no sys.path hacks."""
import ast
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


# ------------------------------------------------------------------ the library's import graph
_LIB = ROOT / "trs_lib"
# ``python -m trs_lib.reproduce``, the grid's command: the one library-level module allowed to
# name the companion (inside its ``__main__`` block).
_COMMAND = "trs_lib.reproduce"


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, modules):
    """``[(imported trs_lib module, at module level?)]`` of one file, from its syntax tree."""
    me = _module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            mod = ".".join(x for x in (base, node.module) if x) if node.level else (node.module or "")
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out += [(n, node.col_offset == 0) for n in names if n in modules and n != me]
    return out


def _graph():
    files = {_module_name(p): p for p in _LIB.rglob("*.py")}
    return {m: _imports(p, files) for m, p in files.items()}


def test_the_import_graph_has_no_cycle():
    """Every import counts, function-local ones too (they used to hide two cycles)."""
    graph = {m: {n for n, _ in deps if not n.startswith(m + ".")} for m, deps in _graph().items()}
    state, path, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, cycles


def test_the_library_never_imports_the_companion():
    bad = [(m, n) for m, deps in _graph().items() for n, _ in deps
           if not m.startswith("trs_lib.companion") and m != _COMMAND
           and n.startswith("trs_lib.companion")]
    assert not bad, bad


def test_no_function_local_imports_of_the_package():
    """Imports of trs_lib's own modules sit at the top of each module (optional third-party
    dependencies may still be imported where they are used)."""
    bad = [(m, n) for m, deps in _graph().items() if m != _COMMAND
           for n, top in deps if not top]
    assert not bad, bad


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in _LIB.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, long


def test_the_evaluation_page_is_a_thin_caller():
    """notebooks/evaluate.py calls trs_lib.evaluate.run and shows the record: at most 80 lines
    of code (comments, blank lines and Markdown cells aside), and no evaluation of its own."""
    text = (ROOT / "notebooks" / "evaluate.py").read_text(encoding="utf-8")
    code = [ln for cell in text.split("# %%") if not cell.startswith(" [markdown]")
            for ln in cell.splitlines()[1:] if ln.strip() and not ln.strip().startswith("#")]
    assert len(code) <= 80, f"notebooks/evaluate.py has {len(code)} code lines"
    assert "E.run(" in text and "evaluate_suite" not in text and "whitebox_table" not in text
