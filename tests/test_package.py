"""The package is whole: every source folder is a subpackage the wheel ships, and imports run one way."""
import ast
import os

from avjax import selfcheck

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "avjax")

# Which avjax packages each layer may import (besides itself and the bottom layers, `avjax.common` and
# `avjax.errors`): lower layers never import higher ones (attacks never import training; models never import data).
BOTTOM = {"common", "errors", "compiled"}
ALLOWED = {
    "common": set(),
    "errors": set(),
    "compiled": set(),
    "models": {"defenses", "configs"},
    "attacks": {"models"},
    "defenses": set(),
    "data": {"configs"},
    "configs": set(),
    "porting": {"models", "model_dir"},
    "train": {"models", "data", "parallel", "checkpoint", "porting", "defenses", "attacks"},  # attacks: AT
    "evaluation": {"attacks", "data", "parallel", "configs", "models", "defenses", "certify"},
    "certify": {"attacks", "parallel"},
}


def _source_folders():
    out = set()
    for dirpath, _, files in os.walk(ROOT):
        if "__pycache__" in dirpath or not any(f.endswith(".py") for f in files):
            continue
        rel = os.path.relpath(dirpath, ROOT)
        if rel != ".":
            out.add(rel.replace(os.sep, "."))
    return out


def test_every_source_folder_is_a_listed_subpackage():
    folders = _source_folders()
    assert folders == set(selfcheck.SUBPACKAGES)
    for folder in folders:
        assert os.path.isfile(os.path.join(ROOT, *folder.split("."), "__init__.py")), folder


def test_every_installed_module_imports():
    names = selfcheck.import_everything()
    assert "avjax.data.tfds.records" in names and "avjax.train.loop" in names


def _avjax_imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("avjax"):
            parts = node.module.split(".")
            if len(parts) == 1:  # from avjax import x, y
                yield from (a.name for a in node.names)
            else:
                yield parts[1]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("avjax."):
                    yield a.name.split(".")[1]


def _avjax_modules(path):
    """Full names of the avjax modules a file imports (`from avjax.data import sources` -> avjax.data.sources)."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("avjax"):
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("avjax"))


def test_imports_run_from_higher_layers_to_lower_ones():
    bad = []
    for layer, allowed in ALLOWED.items():
        base = os.path.join(ROOT, layer)
        paths = [base + ".py"] if os.path.isfile(base + ".py") else [
            os.path.join(d, f) for d, _, fs in os.walk(base) for f in fs if f.endswith(".py")]
        for path in paths:
            for target in _avjax_imports(path):
                if target not in allowed | {layer} | BOTTOM:
                    bad.append(f"{os.path.relpath(path, ROOT)} imports avjax.{target}")
    assert not bad, bad


def test_no_import_cycle_between_layout_a_and_tfds():
    src = open(os.path.join(ROOT, "data", "layout_a.py")).read()
    assert "tfds" not in src


def test_sources_choose_the_formats_and_no_format_imports_sources():
    """`data/sources.py` imports each format (decoded, layout A, TFDS); none of them imports it back."""
    for name in ("decoded", "layout_a", "tfds", "preprocess", "synthetic"):
        base = os.path.join(ROOT, "data", name)
        paths = [base + ".py"] if os.path.isfile(base + ".py") else [
            os.path.join(base, f) for f in os.listdir(base) if f.endswith(".py")]
        for path in paths:
            assert "avjax.data.sources" not in set(_avjax_modules(path)), f"{path} imports avjax.data.sources"


def test_selfcheck_passes():
    assert selfcheck.main() == 0
