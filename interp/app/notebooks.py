"""Execute the notebooks on a run and save them with their outputs, behind the report's RTP-LX guard.

``make notebooks`` runs ``python -m interp.app.notebooks --preset demo --run-dir runs/demo``: each
notebook in ``notebooks/`` is executed top to bottom on that run (``XDETOX_NB_PRESET`` /
``XDETOX_NB_RUN_DIR``), plotly figures are saved as PNG as well (so a repository browser shows
them), and every output is checked by :func:`interp.viz.report.assert_no_prompt_text` against the
RTP-LX prompts before the file is written. A leak writes nothing and names the notebook and cell.
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from interp.viz.report import PromptTextLeakError, assert_no_prompt_text

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: Mimetypes a figure image can be checked through: the source it was rendered from, holding its text.
_SOURCE_MIMES = ("application/vnd.plotly.v1+json", "image/svg+xml", "text/html", "application/json")
#: Raster images: their text cannot be read back, so they pass only beside a checked source.
_RASTER = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")


def output_texts(nb: Any) -> Iterator[tuple[int, str]]:
    """Yield (cell index, text) for every output of every code cell: streams, every mimetype of rich
    data (``application/javascript``, ``application/vnd.dataresource+json`` and any other included),
    output metadata and errors. Raises :class:`PromptTextLeakError` for a raster image without a
    source sibling (:data:`_SOURCE_MIMES`), since its pixels could hold text no check can read."""
    import json

    def text(x: Any) -> str:
        return x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)

    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if out.get("metadata"):
                yield i, text(out["metadata"])
            if kind == "stream":
                yield i, str(out.get("text", ""))
            elif kind in ("display_data", "execute_result", "update_display_data"):
                data = out.get("data") or {}
                raster = [m for m in data if m in _RASTER or (m.startswith("image/") and m != "image/svg+xml")]
                if raster and not any(m in data for m in _SOURCE_MIMES):
                    raise PromptTextLeakError(
                        f"cell {i}: a {raster[0]} output has no checkable source beside it "
                        f"(one of {', '.join(_SOURCE_MIMES)}); save figures as plotly figures, not bare images")
                for mime, value in data.items():
                    if mime not in raster:
                        yield i, text(value)
            elif kind == "error":
                yield i, "\n".join([str(out.get("ename", "")), str(out.get("evalue", "")), *out.get("traceback", [])])
            else:
                yield i, text(dict(out))


def check_notebook_outputs(nb: Any, forbidden: Mapping[str, str] | Iterable[str], *, name: str = "notebook") -> None:
    """Raise :class:`PromptTextLeakError` naming ``name`` and the cell if any output holds RTP-LX prompt text."""
    forbidden = dict(forbidden) if isinstance(forbidden, Mapping) else list(forbidden)
    try:
        for i, text in output_texts(nb):
            try:
                assert_no_prompt_text(text, forbidden)
            except PromptTextLeakError as e:
                raise PromptTextLeakError(f"{name}, cell {i}: {e}") from None
    except PromptTextLeakError as e:
        raise PromptTextLeakError(str(e) if str(e).startswith(name) else f"{name}, {e}") from None


def rtplx_texts(data_root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Return {id: text} of every RTP-LX prompt of the data root (the texts no saved output may hold)."""
    from interp.data.rtplx import load_rtplx

    return {p.id: p.text for p in load_rtplx(data_root)}


@contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute_notebook(path: str | os.PathLike[str], *, preset: str, run_dir: str | os.PathLike[str],
                     timeout: int = 3600, png: bool | None = None) -> Any:
    """Return the notebook at ``path`` executed on ``run_dir`` (the file is not touched).

    With ``png`` (default: when static export works here) plotly figures carry an ``image/png``
    next to their interactive JSON.
    """
    import nbformat
    from nbclient import NotebookClient

    from interp.viz.figures import _use_system_chromium, static_export_problem

    path = Path(path)
    if png is None:
        png = static_export_problem() is None
    env = {"XDETOX_NB_PRESET": preset, "XDETOX_NB_RUN_DIR": str(Path(run_dir).resolve()),
           "PLOTLY_RENDERER": "plotly_mimetype+png" if png else "plotly_mimetype"}
    if png:
        env["BROWSER_PATH"] = _use_system_chromium()
    nb = nbformat.read(path, as_version=4)
    with _env(env):  # the kernel inherits this process's environment
        NotebookClient(nb, timeout=timeout, startup_timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def save_checked(nb: Any, path: str | os.PathLike[str], forbidden: Mapping[str, str] | Iterable[str]) -> Path:
    """Write ``nb`` to ``path`` atomically after :func:`check_notebook_outputs`; on a leak nothing is written."""
    import nbformat

    from interp.core.artifacts import atomic_write_text

    path = Path(path)
    check_notebook_outputs(nb, forbidden, name=path.name)
    return atomic_write_text(path, nbformat.writes(nb) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m interp.app.notebooks``: execute every notebook on a run and save it with its outputs."""
    p = argparse.ArgumentParser(prog="python -m interp.app.notebooks", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo", help="the run's preset (default demo)")
    p.add_argument("--run-dir", default=None, help="the run directory (default runs/<preset>)")
    p.add_argument("--notebooks", default=str(NOTEBOOK_DIR), help="folder of .ipynb files (saved in place)")
    p.add_argument("--out-dir", default=None, help="save the executed copies here instead of in place")
    p.add_argument("--data-root", default=None, help="data root whose RTP-LX prompts the guard checks against")
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir or f"runs/{args.preset}")
    src = Path(args.notebooks)
    paths = sorted(src.glob("*.ipynb"))
    if not paths:
        print(f"python -m interp.app.notebooks: error: no .ipynb files in {src}", file=sys.stderr)
        return 2
    forbidden = rtplx_texts(args.data_root)
    out_dir = Path(args.out_dir) if args.out_dir else src
    try:
        from tqdm.auto import tqdm

        for path in tqdm(paths, desc="notebooks", unit="notebook"):
            nb = execute_notebook(path, preset=args.preset, run_dir=run_dir)
            save_checked(nb, out_dir / path.name, forbidden)
    except PromptTextLeakError as e:
        print(f"python -m interp.app.notebooks: error: {e}", file=sys.stderr)
        return 2
    print(f"notebooks: {len(paths)} executed on {run_dir} and saved with outputs in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
