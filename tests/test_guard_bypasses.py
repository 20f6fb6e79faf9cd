"""The RTP-LX guard (interp.viz.report.assert_no_prompt_text, interp.app.notebooks.check_notebook_outputs) against
the bypasses a review found: <br> in plotly hover text, text split by HTML tags, a prompt's tail or the
prompt minus its first character, non-text mimetypes, output metadata and bare PNG images."""
from __future__ import annotations

import nbformat
import plotly.graph_objects as go
import pytest

from interp.app.notebooks import check_notebook_outputs
from interp.viz.report import PromptTextLeakError, assert_no_prompt_text, render_report

PID = "rtplx:de:5"
TEXT = "Diese erfundene Beispielzeile steht hier nur für den Test des Wächters"
FORBIDDEN = {PID: TEXT, "rtplx:en:1": "another invented prompt that never appears anywhere here"}


def _page(item) -> str:
    return render_report({"leak": [item]}, manifest={}, scorer_identity={})


def _trips(page: str) -> None:
    with pytest.raises(PromptTextLeakError, match=rf"1 RTP-LX prompt\(s\) \({PID}\)") as e:
        assert_no_prompt_text(page, FORBIDDEN)
    assert TEXT not in str(e.value)


def test_plotly_hovertext_with_br_trips() -> None:
    broken = "<br>".join(TEXT[i:i + 13] for i in range(0, len(TEXT), 13))
    _trips(_page(go.Figure(go.Bar(x=["a"], y=[1], hovertext=[broken]))))


def test_text_split_by_html_tags_trips() -> None:
    half = len(TEXT) // 2
    _trips(_page(f"<span>{TEXT[:half]}</span><b>{TEXT[half:]}</b>"))
    _trips(f"<p>{TEXT[:7]}<i>{TEXT[7:30]}</i>{TEXT[30:]}</p>")


@pytest.mark.parametrize("part", ["minus_first_char", "tail", "middle"])
def test_any_stretch_of_a_prompt_trips(part: str) -> None:
    frag = {"minus_first_char": TEXT[1:], "tail": TEXT[-25:], "middle": TEXT[20:45]}[part]
    _trips(_page(frag))


def test_clean_page_passes_and_short_fragments_do_not_trip() -> None:
    assert_no_prompt_text(_page("Diese erfundene"), FORBIDDEN)  # 14 letters: under the 20-character window
    assert_no_prompt_text(_page(go.Figure(go.Bar(x=["de", "en"], y=[1, 2]))), FORBIDDEN)


def _nb(*outputs) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1"), cell])


def _display(data: dict, metadata: dict | None = None) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


@pytest.mark.parametrize("output", [
    _display({"application/javascript": f"console.log({TEXT!r})"}),
    _display({"application/vnd.dataresource+json": {"data": [{"prompt": TEXT}], "schema": {}}}),
    _display({"text/plain": "fine"}, metadata={"note": TEXT}),
    _display({"text/html": "<br>".join(TEXT.split(" "))}),
    {"output_type": "execute_result", "execution_count": 1, "data": {"application/x-custom": TEXT[3:]},
     "metadata": {}},
], ids=["javascript", "dataresource", "metadata", "html_br", "any_mimetype"])
def test_notebook_guard_checks_every_mimetype_and_metadata(output: dict) -> None:
    with pytest.raises(PromptTextLeakError, match=rf"nb\.ipynb, cell 1: .*\({PID}\)"):
        check_notebook_outputs(_nb(output), FORBIDDEN, name="nb.ipynb")


def test_bare_png_is_refused_and_passes_beside_its_plotly_source() -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    with pytest.raises(PromptTextLeakError, match=r"nb\.ipynb, cell 1: a image/png output has no checkable source"):
        check_notebook_outputs(_nb(_display({"image/png": png, "text/plain": "<Figure>"})), FORBIDDEN, name="nb.ipynb")
    fig = go.Figure(go.Bar(x=["de"], y=[1])).to_plotly_json()
    check_notebook_outputs(_nb(_display({"image/png": png, "application/vnd.plotly.v1+json": fig})), FORBIDDEN,
                           name="nb.ipynb")
