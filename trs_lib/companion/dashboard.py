"""The book's landing page as a dashboard, generated from the records (never typed by hand).

``python -m trs_lib.companion.dashboard book/_generated/dashboard.md`` (run by ``make book``) writes the
MyST fragment that ``book/intro.md`` includes: every claim of the paper with its verdict as a
coloured badge, its interval, its scale and a link to its page (``trs_lib.companion.claims``); the theory
findings (``trs_lib.theory.findings``, when the theory chapter provides them); the set-up
commands and one CPU and one GPU command with the wall times measured by their records.
The pages and the dashboard call the same functions, so they cannot disagree.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from . import claims as C
from . import grid
from . import ladder as L
from . import landing as LD
from ..atomic import atomic_write_json
from ..paths import results_dir
from ..records import cell_record, load_records
from .labels import readable
from .verdicts import MIN_SEEDS
from .. import theory

__all__ = ["claims", "claims_frame", "flags", "margin_text", "counts_text", "number", "theory_findings", "commands", "render", "write", "badge", "VERDICT_CLASS"]

# Verdict -> CSS class of its badge (book/_static/companion.css).
VERDICT_CLASS = {"reproduced": "good", "holds": "good", "confirmed": "good",
                 "holds, never informative": "neutral",
                 "not reproduced": "bad", "refuted": "bad",
                 "inconclusive": "neutral", "vacuous at this scale": "neutral",
                 C.PROVISIONAL: "neutral", C.NO_VERDICT: "missing",
                 "not yet run at this scale": "missing"}

# What a claim was judged under (``evaluation`` of a claim).
UNDER = {"paper": "the paper's attack", "worst_case": "the strong worst case", "n/a": "no attack",
         "blackbox": "transfer from unseen models"}

SETUP_COMMANDS = ("make book", "make test")
AUTHORS_CODE = "https://github.com/AI-secure/Transferability-Reduced-Smooth-Ensemble"


def badge(verdict: str) -> str:
    """Inline HTML: the verdict in a coloured badge (class ``verdict verdict-<kind>``)."""
    kind = VERDICT_CLASS.get(str(verdict), "neutral")
    return f'<span class="verdict verdict-{kind}">{verdict}</span>'


def _num(v) -> bool:
    return v is not None and v == v


def number(v, unit) -> str:
    """A claim's number in its unit: points with one decimal, other units with three."""
    return f"{v:+.1f}" if unit == "points" else f"{v:+.3f}"


def _span(est, lo, hi, unit) -> str:
    return f"{number(est, unit)} [{number(lo, unit)}, {number(hi, unit)}] {unit}"


def _interval(c: dict) -> str:
    """The deciding statistic and its interval, as the claim's verdict reads it."""
    if c.get("parts"):
        return "; ".join(f"{p['id']}: {_span(p['estimate'], p['lo'], p['hi'], p['unit'])} "
                         f"({p['verdict']})" for p in c["parts"] if _num(p.get("estimate")))
    if _num(c.get("estimate")) and _num(c.get("lo")) and _num(c.get("hi")):
        return f"{c.get('statistic')}: {_span(c['estimate'], c['lo'], c['hi'], c.get('unit'))}"
    return "n/a"


def margin_text(c: dict) -> str:
    """The claim's margin with its source."""
    if not _num(c.get("margin")):
        return str(c.get("margin_source") or "")
    return f"{c['margin']:g} {c.get('unit') or 'points'}: {c.get('margin_source', '')}"


def counts_text(c: dict) -> str:
    """Seeds and points per side of the comparison."""
    if not c.get("seeds"):
        return ""
    pts = "/".join(str(n) for n in c.get("points", ()))
    return "; ".join(f"{side}: {k} seed{'s' if k != 1 else ''}" for side, k in
                     zip(c.get("sides", ("a", "b")), c["seeds"])) + f"; {pts} points"


def flags(c: dict) -> str:
    """The claim's flags: provisional (with what its interval reads), fragile (the rows), and
    margin-sensitive (the verdicts at half and twice the margin)."""
    out = []
    if c.get("verdict") == C.PROVISIONAL:
        out.append(f"provisional: fewer than {MIN_SEEDS} seeds a side; the interval reads "
                   f"{c.get('reading')}")
    if c.get("fragile"):
        out.append("fragile: the verdict changes without " + ", ".join(c["fragile"]))
    if c.get("margin_sensitive"):
        out.append(f"margin-sensitive: at half the margin {c['at_half_margin']}, at twice "
                   f"{c['at_twice_margin']}")
    elif c.get("margin_sensitive") is False:
        out.append("same verdict at half and twice the margin")
    return "; ".join(out)


def _dataset_of(page: str) -> str:
    return "cifar10" if "cifar" in page or "table4" in page else "mnist"


def claims(rung="cpu", records=None, root=None, checked=None) -> list[dict]:
    """Every claim of ``trs_lib.companion.claims.check_claims`` as a dict with ``id``,
    ``text``, ``source``, ``page``, ``verdict``, ``interval`` (text, with the margin), ``scale``
    (text) and ``evidence``."""
    records = load_records(root) if records is None else records
    rows = C.check_claims(rung, records) if checked is None else checked
    sc = grid.rung(rung)
    out = []
    for r in rows:
        page = r.get("page", "")
        evaluation = r.get("evaluation", "paper")
        fl = flags(r)
        out.append(dict(id=r["id"], text=r.get("text", ""), source=r.get("source", ""), page=page,
                        under=UNDER.get(evaluation, evaluation),
                        verdict=r.get("verdict", ""), evaluation=evaluation,
                        interval=_interval(r) + (f" ({fl})" if fl else ""),
                        statistic=_interval(r), flags=fl, counts=counts_text(r),
                        margin=margin_text(r), reading=r.get("reading"),
                        scale=_short_scale(sc, _dataset_of(page)) + (
                            f"; {counts_text(r)}" if r.get("seeds") else ""),
                        evidence=_evidence(r)))
    return out


def _evidence(r: dict) -> str:
    rows = "; ".join(f"{x['label']}: {number(x['estimate'], r.get('unit'))}"
                     + (f" [{number(x['lo'], r['unit'])}, {number(x['hi'], r['unit'])}]"
                        if _num(x.get("lo")) else "") + (f" {x['note']}" if x.get("note") else "")
                     for x in r.get("rows", []))
    extra = f"; simultaneous: {r['simultaneous']}" if r.get("simultaneous") else ""
    return str(r.get("evidence", "")) + extra + (f". Rows: {rows}" if rows else "")


def claims_frame(rung="cpu", records=None, root=None):
    """The summary page's table: per claim and evaluation, the verdict, the deciding statistic
    and its interval, seeds and points per side, the margin with its source, and the flags."""
    import pandas as pd
    rows = claims(rung, records, root)
    out = pd.DataFrame([{"claim": c["text"], "judged under": c["under"], "verdict": c["verdict"],
                         "deciding statistic [95% interval]": c["statistic"],
                         "seeds and points per side": c["counts"], "margin (source)": c["margin"],
                         "flags": c["flags"], "evidence": readable(c["evidence"])} for c in rows],
                       index=[c["id"] for c in rows])
    out.index.name = "claim id"
    return out


def _short_scale(sc, paper_dataset: str) -> str:
    ds = sc.dataset(paper_dataset)
    return f"{sc.name}: {ds}" if ds else f"{paper_dataset}: not run at scale {sc.name}"


def theory_findings() -> list[dict]:
    """``trs_lib.theory.findings()``."""
    return [dict(f) for f in theory.findings()]


def errata_count(path=None) -> int:
    """How many numbered items ``book/errata.md`` lists (its ``## N.`` headings)."""
    path = Path(path) if path else Path(__file__).resolve().parents[2] / "book" / "errata.md"
    if not path.is_file():
        return 0
    return len(re.findall(r"^## \d+\.", path.read_text(encoding="utf-8"), flags=re.M))


def _wall(records, cells) -> tuple[float, int, int, str]:
    """Summed wall time (s) of the records of ``cells``, how many ran, of how many, hardware."""
    total, ran, hw = 0.0, 0, ""
    for cell in cells:
        rec = cell_record(cell, records)
        if rec is None:
            continue
        ran += 1
        prov = rec.get("provenance", {})
        total += float(prov.get("wall_time_s") or 0.0)
        h = prov.get("hardware", {})
        hw = h.get("gpu") or f"{h.get('cpu_count', '?')}-core CPU, {h.get('torch_threads', '?')} torch thread(s)"
    return total, ran, len(cells), hw


def _table_cells(table_id, rung):
    cells = grid.table_cells(str(table_id), rung)
    return list(dict.fromkeys(list(cells["train"].values()) + list(cells["eval"].values())))


def commands(records=None, root=None) -> list[dict]:
    """The set-up commands and one CPU and one GPU command, each with its measured wall time
    (the sum of its records' wall times) or a sentence saying it has not been measured."""
    records = load_records(root) if records is None else records
    out = [dict(what="set up and build this book", command=SETUP_COMMANDS[0], time=""),
           dict(what="set up and run the tests", command=SETUP_COMMANDS[1], time="")]
    for what, table, rung, extra in (
            ("Table 1 at the CPU scale (train and attack every column)", "1", "cpu", ""),
            ("Table 2 at the paper's scale on a GPU (CIFAR-10)", "2", "gpu", " --device cuda")):
        cells = _table_cells(table, rung)
        total, ran, n, hw = _wall(records, cells)
        if ran == 0:
            time = "not measured yet: no run of it is recorded"
        else:
            time = (f"{total / 60:.0f} min measured ({ran} of {n} runs recorded, summed wall "
                    f"time, {hw})")
        out.append(dict(what=what, time=time,
                        command=f".venv/bin/python -m trs_lib.reproduce --tables {table} "
                                f"--rung {rung}{extra}"))
    return out


def repository_url(root=None) -> str | None:
    """The public URL of this repository (``git remote get-url origin``), or None when it has
    none or only a local path (never shown: it would be a path of this machine)."""
    try:
        url = subprocess.run(["git", "remote", "get-url", "origin"], capture_output=True,
                             text=True, timeout=10, cwd=root or Path(__file__).resolve().parent
                             ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if url.startswith("git@github.com:"):
        url = "https://github.com/" + url.split(":", 1)[1]
    return url.removesuffix(".git") if url.startswith("https://") else None


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell, labels as the paper means them (no raw TeX)."""
    return readable(text).replace("|", "\\|").replace("\n", " ")


#: the forest plot's path from the book's root (``make dashboard`` writes it beside the dashboard)
FOREST = "/book/_generated/forest.png"


def scale_note(records) -> str:
    """One paragraph on the scale ladder (:mod:`trs_lib.companion.ladder`): Table 1's headline
    claim at the highest rung that has it, and whether it is scale-dependent."""
    rows = L.ladder(records)
    parts = []
    for ev, name in L.EVALUATIONS.items():
        h = L.highest(rows, ev)
        if h is not None:
            parts.append(f"under {name}, {badge(h['verdict'])} at rung `{h['rung']}` "
                         f"({h['estimate']:+.1f} [{h['lo']:+.1f}, {h['hi']:+.1f}] points)")
    dep = L.scale_dependent(rows)
    text = ("**Across the scale ladder** ({doc}`../notebooks/scale_ladder`), TRS minus the best "
            "other column of Table 1 at the highest rung that has it: " + "; ".join(parts) + ". ")
    if dep:
        text += "**Scale-dependent**: " + "; ".join(
            f"under {L.EVALUATIONS[ev]}, " + ", ".join(f"{v} on {', '.join(r)}" for v, r in by.items())
            for ev, by in dep.items()) + "."
    else:
        text += "No two rungs that decide disagree."
    return text


def render(rung="cpu", records=None, root=None, repo_url=None, forest=FOREST) -> str:
    """The dashboard as MyST Markdown (included by ``book/intro.md``): what we found, the
    forest plot (``forest``: its path from the book's root, written by :func:`write`), a
    compact verdict table with each claim's details folded below it, the scale ladder, the
    theory, and how to run it."""
    records = load_records(root) if records is None else records
    raw = C.check_claims(rung, records)
    cl = claims(rung, records, checked=raw)
    counts = {}
    for c in cl:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    sc = grid.rung(rung)
    found = LD.findings(raw, records, rung)
    lines = ["```{admonition} What we found", ":class: tip", ""] + \
        [f"* {_cell(f)}" for f in found] + ["```", ""] if found else []
    lines += [f"## The paper's claims at the {rung} rung", "",
              ", ".join(f"{badge(v)} {n}" for v, n in counts.items()) + ". Computed from the "
              "run records under `results/` by `trs_lib.companion.claims`; each claim links to its page.", "",
              f"![Forest plot of every claim's deciding statistic with its 95% interval and margin: "
              f"{_cell(LD.forest_alt_text(raw))}]({forest})", "",
              "```{list-table}", ":header-rows: 1", ":class: dashboard",
              ":widths: 50 15 20 15", "",
              "* - claim", "  - verdict", "  - difference [95%]", "  - rung"]
    for c, v in zip(cl, LD.verdict_rows(raw)):
        under = f" <small>(under {c['under']})</small>" if c["evaluation"] in ("paper", "worst_case", "blackbox") else ""
        lines += [f"* - {_cell(c['text'])}{under} {{doc}}`→ <../notebooks/{c['page']}>`",
                  f"  - {badge(c['verdict'])}" + (f" <small>{_cell(c['flags'])}</small>" if c["flags"] else ""),
                  f"  - {_cell(v['difference'])}" + (f" <small>{_cell(v['unit'])}</small>" if v["unit"] != "points" else ""),
                  f"  - <small>{_cell(v['rung'] or rung)}</small>"]
    lines += ["```", "", "<details><summary>Each claim in full: the deciding statistic, margin and "
              "its source, seeds and points per side, and the rows</summary>", ""]
    for c in cl:
        lines += [f"* **{_cell(c['id'])}** ({_cell(c['under'])}): {_cell(c['statistic'])}; margin "
                  f"{_cell(c['margin'])}; {_cell(c['scale'])}. {_cell(c['evidence'])}"]
    lines += ["", "</details>", ""]
    mnist, cifar = sc.dataset("mnist"), sc.dataset("cifar10")
    lines += ["```", "",
              f"The {rung} scale: MNIST columns on {_cell(sc.describe('mnist'))}"
              if mnist else f"The {rung} scale runs no MNIST column",
              f"; CIFAR-10 columns on {_cell(sc.describe('cifar10'))}." if cifar
              else "; CIFAR-10 columns are not run at this scale (GPU work).", ""]
    lines += [scale_note(records), "",
              "**Downloads**: every run record behind these verdicts (each table page links its "
              "own), and the zoo's seed-0 ensembles with their model cards in RobustBench's field "
              "names ({doc}`../notebooks/attack_our_ensembles`).", ""]
    lines += ["## The theory: what holds and what does not", ""]
    found = theory_findings()
    refuted = [f for f in found if f.get("verdict") == "refuted"]
    n_errata = errata_count()
    lines += [f"{len(found)} findings, {len(refuted)} of them statements of the paper refuted "
              "by a counterexample; "
              + (f"{n_errata} errata" if n_errata else "the errata") + " in {doc}`errata`.",
              "", "| statement | verdict | evidence | page |", "| --- | --- | --- | --- |"]
    for f in found:
        page = str(f.get("page", "")).removesuffix(".ipynb").removesuffix(".md")
        link = f"{{doc}}`../notebooks/{page}`" if page and not page.startswith("book/") \
            else (f"{{doc}}`{page.removeprefix('book/')}`" if page else "")
        lines.append(f"| {_cell(f.get('statement', f.get('id', '')))} | {badge(f.get('verdict', ''))} | "
                     f"<small>{_cell(f.get('evidence', ''))}</small> | {link} |")
    lines.append("")
    url = repo_url if repo_url is not None else repository_url(root)
    lines += ["## Run it yourself", ""]
    if url:
        lines += [f"The repository: <{url}>. ", ""]
    else:
        lines += ["The repository is the one this book was built from (its `README.md` has the "
                  f"same commands). The authors' own code: <{AUTHORS_CODE}>.", ""]
    lines += ["| what | command | measured time |", "| --- | --- | --- |"]
    for c in commands(records):
        lines.append(f"| {_cell(c['what'])} | `{c['command']}` | {_cell(c['time']) or 'minutes (installs the pinned environment)'} |")
    lines.append("")
    return "\n".join(lines)


def _relative_paths(obj, project: str):
    """``obj`` with every string that starts with the project's absolute path made relative."""
    if isinstance(obj, dict):
        return {k: _relative_paths(v, project) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_paths(v, project) for v in obj]
    if isinstance(obj, str) and obj.startswith(project):
        return obj[len(project):].lstrip("/") or "."
    return obj


def export_records(dest, root=None) -> int:
    """Copy every run record under ``results/`` to ``dest`` (the site's download folder), with
    paths of the machine that ran it made relative to the project and the checksum renewed, and
    the zoo's weights (``results/zoo``) as they are. Returns how many records it wrote."""
    src = Path(root or results_dir())
    project = str(src.resolve().parent)
    dest = Path(dest)
    n = 0
    for key, rec in load_records(src).items():
        rec = {k: v for k, v in rec.items() if not k.startswith("_")}
        out = dest / f"{key}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, _relative_paths(rec, project), checksum=True)
        n += 1
    zoo = src / "zoo"
    if zoo.is_dir():  # the zoo's weights, sidecars and index, verbatim (their checksums hold)
        import shutil
        (dest / "zoo").mkdir(parents=True, exist_ok=True)
        for f in sorted(zoo.iterdir()):
            if f.is_file() and f.suffix in (".safetensors", ".json"):
                shutil.copy2(f, dest / "zoo" / f.name)
    return n


def write(path, rung="cpu", root=None) -> Path:
    """Write :func:`render` to ``path`` (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = load_records(root)
    LD.forest_figure(C.check_claims(rung, records), path.parent / Path(FOREST).name)
    path.write_text(render(rung, records=records), encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m trs_lib.companion.dashboard OUT.md [--records DIR]
    args = sys.argv[1:]
    if len(args) not in (1, 3) or (len(args) == 3 and args[1] != "--records"):
        sys.exit("usage: python -m trs_lib.companion.dashboard OUT.md [--records DOWNLOAD_DIR]")
    print(f"dashboard: {write(args[0])}")
    if len(args) == 3:
        print(f"records for download: {export_records(args[2])} in {args[2]}")
