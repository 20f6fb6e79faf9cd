"""Every notebook executes top to bottom on the smoke preset; saved outputs (``make notebooks``) pass the
report's RTP-LX guard, and the guard trips on a leaking output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from interp.app.notebooks import check_notebook_outputs, execute_notebook, main, rtplx_texts, save_checked
from interp.viz.report import PromptTextLeakError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def forbidden(data_root) -> dict[str, str]:
    return rtplx_texts(data_root)


def test_there_are_six_notebooks() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05"]


def _code(path: Path) -> str:
    import nbformat

    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_teach_the_public_api(path: Path) -> None:
    """00 starts from ``interp.load_model("default")`` with no pipeline; 01..05 open their run with ``open_run``;
    none reaches into the pipeline's internals (private methods, stage-output strings, prompt salts)."""
    import nbformat

    code = _code(path)
    nb = nbformat.read(path, as_version=4)
    assert not [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)], \
        "saved notebooks carry no outputs (`make notebooks` writes executed copies)"
    for private in ("._", "pipe.", "Pipeline(", ".output(", "salt=", "eval_prompts"):
        assert private not in code, private
    if path.name.startswith("00"):
        first = next(c.source for c in nb.cells if c.cell_type == "code")
        assert 'interp.load_model("default")' in first
        assert "pipeline" not in code and "open_run" not in code
    else:
        assert "open_run(RUN_DIR)" in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_notebook_outputs_pass_the_guard(path: Path, forbidden: dict[str, str]) -> None:
    """A notebook is saved either without outputs or with outputs that hold no RTP-LX text."""
    import nbformat

    check_notebook_outputs(nbformat.read(path, as_version=4), forbidden, name=path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, smoke_run: Path, forbidden: dict[str, str], tmp_path) -> None:
    from interp.viz.figures import static_export_problem

    nb = execute_notebook(path, preset="smoke", run_dir=smoke_run)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.get("output_type") == "error"]
    saved = save_checked(nb, tmp_path / path.name, forbidden)  # what `make notebooks` writes
    reread = json.loads(saved.read_text(encoding="utf-8"))
    assert sum(len(c.get("outputs", [])) for c in reread["cells"] if c["cell_type"] == "code") == len(outputs)
    plots = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    if static_export_problem() is None and plots:  # figures are visible where plotly JS is not run
        assert all(o["data"].get("image/png", "")[:8] == "iVBORw0K" for o in plots)
    _check_outputs_in_chromium(outputs, tmp_path)


def _check_outputs_in_chromium(outputs: list, tmp_path: Path) -> None:
    """Draw the notebook's figures and text outputs in headless Chromium: no JS errors, no tofu."""
    from test_report import CHROMIUM, _font_probe, tofu_scripts

    if CHROMIUM is None:
        return
    import plotly.graph_objects as go

    from interp.viz.report import render_report

    items: list = []
    for o in outputs:
        data = o.get("data", {})
        if "application/vnd.plotly.v1+json" in data:
            items.append(go.Figure(data["application/vnd.plotly.v1+json"]))
        elif "text/plain" in data or o.get("output_type") == "stream":
            items.append(str(data.get("text/plain", o.get("text", ""))))
    page = render_report({"outputs": items}, manifest={}, scorer_identity={})
    measured = _font_probe(tmp_path, page)  # asserts no JS errors
    assert tofu_scripts(measured) == [], measured


def _leaky_notebook(tmp_path: Path, code: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(code)])
    path = tmp_path / "leak.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("how", ["print", "html", "dataframe", "error"])
def test_guard_trips_on_an_executed_output(how: str, forbidden: dict[str, str], smoke_run: Path, tmp_path) -> None:
    pid, text = next((k, v) for k, v in forbidden.items() if len(v) > 40 and ":de:" in k)
    code = {"print": f"print({text!r})",
            "html": f"from IPython.display import HTML\nHTML('<b>' + {text!r}.upper() + '</b>')",
            "dataframe": f"import pandas as pd\npd.DataFrame({{'prompt': [{text!r}]}})",
            "error": f"raise ValueError({text!r})"}[how]
    path = _leaky_notebook(tmp_path, code)
    if how == "error":
        import nbformat
        from nbclient import NotebookClient

        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, kernel_name="python3", allow_errors=True).execute()
    else:
        nb = execute_notebook(path, preset="smoke", run_dir=smoke_run, png=False)
    target = tmp_path / "saved" / "leak.ipynb"
    # a 20-character stretch may be shared by other prompts too: they are named beside it
    with pytest.raises(PromptTextLeakError, match=rf"leak\.ipynb, cell 1: .*\(([^)]*, )?{pid}[,)]") as e:
        save_checked(nb, target, forbidden)
    assert text not in str(e.value) and not target.exists()


def test_make_notebooks_entry_point_saves_checked_outputs(smoke_run: Path, data_root: Path, tmp_path, capsys) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    quickstart = next(p for p in NOTEBOOKS if p.name.startswith("01"))  # runs (here: reuses) the study on --run-dir
    shutil.copy(quickstart, src / quickstart.name)
    rc = main(["--preset", "smoke", "--run-dir", str(smoke_run), "--notebooks", str(src), "--out-dir", str(out),
               "--data-root", str(data_root)])
    assert rc == 0
    saved = json.loads((out / quickstart.name).read_text(encoding="utf-8"))
    assert any(c.get("outputs") for c in saved["cells"] if c["cell_type"] == "code")
    assert json.loads((src / quickstart.name).read_text(encoding="utf-8")) == json.loads(quickstart.read_text())
    assert capsys.readouterr().out.strip().startswith("notebooks: 1 executed on")
    assert main(["--notebooks", str(tmp_path / "empty")]) == 2
