"""The notebooks read a user's own runs, and are committed with the outputs they produce.

Each notebook's parameter cell (tagged ``parameters``) names ``ROOT``, ``RUN_ID`` and an
optional ``DB``, each overridable from the environment (``RUNDOCTOR_NB_*``). The test builds
seeded inputs (``fixtures.notebooks.build_inputs``: a fleet, the rogue-slow run, a queue),
passes them through that environment, and runs the notebook with nbclient; the notebooks never
import ``fixtures``. The committed files carry outputs, so they read on GitHub; the text they
print must be what a fresh run prints (``python -m fixtures.notebooks`` refreshes them). The
kernel is ``python3`` from this interpreter's environment (its kernelspec is installed into a
temporary directory when the environment has none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_the_two_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == ["fleet_view.ipynb", "run_forensics.ipynb"]


def _parameters(nb: Any) -> Any:
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_takes_root_run_id_and_db_as_parameters(path: Path) -> None:
    source = _parameters(nbformat.read(path, as_version=4)).source
    for name in ("ROOT", "RUN_ID", "DB"):
        assert f"\n{name} = os.environ.get(" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_committed_notebook_carries_its_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    params = _parameters(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"{path.name}: a cell was not run"
        assert cell is params or cell.outputs, f"{path.name}: a cell has no output"
        assert all(o.output_type != "error" for o in cell.outputs), f"{path.name}: an error"
    kinds = {
        k for c in nb.cells if c.cell_type == "code" for o in c.outputs for k in o.get("data", {})
    }
    assert "image/png" in kinds  # the charts are embedded, not files beside the notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_uses_only_the_public_api_and_no_fixture(path: Path) -> None:
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    assert "doctor._" not in source and "reports._" not in source
    assert "fixtures" not in "\n".join(
        c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
    )


def _kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``python3`` resolve to a kernel running this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no migration warning from jupyter_core
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(prefix=str(tmp_path / "jupyter"), kernel_name="python3")
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter" / "share" / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def _printed(nb: Any) -> list[str]:
    """Each code cell's standard output, as one text.

    The kernel flushes stdout on its own timing, so one cell's text may arrive as one stream
    output or several (a CI run split ``print(...)``'s line from its newline); what a reader
    sees, the cell's text, is what must match.
    """
    return [
        "".join(o.text for o in c.outputs if o.output_type == "stream" and o.name == "stdout")
        for c in nb.cells
        if c.cell_type == "code"
    ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from fixtures.notebooks import build_inputs

    return build_inputs(tmp_path_factory.mktemp("notebook-inputs"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_runs_on_runs_passed_as_parameters_and_prints_what_is_committed(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inputs: dict[str, str]
) -> None:
    from fixtures.notebooks import execute

    _kernel_env(tmp_path, monkeypatch)
    for name, value in inputs.items():
        monkeypatch.setenv(name, value)
    # Run from an empty directory: nothing but the parameters leads to the inputs.
    fresh = execute(path, tmp_path)  # raises CellExecutionError on any error
    committed = nbformat.read(path, as_version=4)
    assert _printed(fresh) == _printed(committed)
    assert any(_printed(fresh))
