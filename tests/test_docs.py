"""The Python examples of docs/api.md run as written, in order, in one namespace."""
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_api_examples_run():
    text = open(os.path.join(REPO, "docs", "api.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    assert namespace["result"]["n"] == 4 and namespace["codes"].shape == (3, 64)


@pytest.mark.slow
def test_readme_example_runs():
    text = open(os.path.join(REPO, "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], "README.md example", "exec"), namespace)
    assert namespace["adv_image"].shape == (2, 32, 32, 3) and namespace["codes"].shape == (2, 16)


def _cited_paths(text):
    """Repository paths a page cites: `avjax/...`, `benchmarks/...`, `tools/...`, `configs/...`, `docs/...`,
    `tests/...`, `notebooks/...` (in code spans or links), without globs or placeholders."""
    found = re.findall(r"(?<![\w./-])((?:avjax|benchmarks|tools|configs|docs|tests|notebooks)/[\w./-]*\w)", text)
    return {p for p in found if not re.search(r"[<>*]|NAME|/\.\.\.", p)}


def _linked_paths(text):
    """Relative targets of markdown links and images (`[..](path)`, `![..](path)`), without anchors."""
    return {t for t in re.findall(r"\]\(([^)#\s]+)", text) if not re.match(r"[a-z]+:", t)}


def test_every_path_the_readme_and_docs_cite_exists():
    pages = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(REPO, "docs")))
                             if f.endswith(".md")]
    missing = {}
    for page in pages:
        base = os.path.dirname(os.path.join(REPO, page))
        text = open(os.path.join(REPO, page)).read()
        for path in _cited_paths(text):
            if not (os.path.exists(os.path.join(REPO, path)) or os.path.exists(os.path.join(base, path))):
                missing.setdefault(page, []).append(path)
        for path in _linked_paths(text):   # links and images resolve from the page's folder
            if not os.path.exists(os.path.join(base, path)):
                missing.setdefault(page, []).append(path)
    assert not missing, missing


def test_the_losses_api_md_names_are_the_ones_attacks_accept():
    from avjax.attacks.losses import LOSSES
    text = open(os.path.join(REPO, "docs", "api.md")).read()
    line = next(line for line in text.splitlines() if line.startswith("Losses"))
    assert set(re.findall(r'"([\w+]+)"', line)) == set(LOSSES)
