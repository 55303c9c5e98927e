"""Every notebook runs top to bottom at tiny sizes (a failing cell fails the suite) and is stored
without outputs; each opens with an Open-in-Colab badge and the install cell."""
import glob
import os
import time

import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))
BUDGET_S = 180  # each notebook, tiny sizes, on a 2-core CPU


def test_notebooks_equal_their_source_in_tools():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_notebooks", os.path.join(REPO, "tools", "make_notebooks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run: python tools/make_notebooks.py"


def test_there_are_notebooks():
    names = [os.path.basename(p) for p in NOTEBOOKS]
    assert {"01_quickstart.ipynb", "02_attacks.ipynb", "03_defenses.ipynb", "04_original_checkpoints.ipynb",
            "05_own_videos.ipynb"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_stored_without_outputs_with_badge_and_install_cell(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path}: strip the outputs"
    name = os.path.basename(path)
    assert "colab.research.google.com/github/" in book.cells[0].source and name in book.cells[0].source
    assert "AVJAX_NOTEBOOK_SIZE" in book.cells[1].source and "pip" in book.cells[1].source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_runs_top_to_bottom_at_tiny_sizes(path, monkeypatch, tmp_path):
    from nbclient import NotebookClient
    monkeypatch.setenv("AVJAX_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("AVJAX_NOTEBOOK_WORKDIR", str(tmp_path))  # fresh runs, nothing resumed
    book = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    elapsed = time.perf_counter() - t0
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    print(f"{os.path.basename(path)}: {elapsed:.0f} s")
