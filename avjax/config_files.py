"""Loading a config and checking what it needs before any work starts.

`load_config` reads a config file as `python -m avjax.main --config=path:variants` does (for notebooks and
scripts), `resolve_data` fills what a prepared folder decides (its classes and name), `check_inputs` builds the
data sources after checking the ImageNet weights a paper config needs (one error names everything missing), and
`class_names` gives the classes' display names.
"""
import logging
import os

from avjax.data import sources as data_sources
from avjax.errors import MissingInput

log = logging.getLogger(__name__)


def load_config(path, variants: str = "", **overrides):
    """The config of a config file (what `--config=path:variants` gives `python -m avjax.main`), with
    `overrides` as dotted field names (`load_config(p, "runlocal", **{"eval.steps": 5})`), for notebooks
    and scripts. An unknown field is an error, as on the command line."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"avjax_config_{abs(hash(os.path.abspath(path)))}", path)
    if spec is None or not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variants or None)
    for field, value in overrides.items():
        *parents, leaf = field.split(".")
        node = config
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise KeyError(f"{path}: config has no field {field!r}")
        node[leaf] = value
    return config


def resolve_data(config):
    """Fill what a prepared folder (`data.preset = 'folder'`, configs/folder.py) decides: its classes,
    their number, and the dataset's name (the folder's) for the report. Other configs pass unchanged."""
    if config.data.get("preset") != "folder":
        return config
    from avjax.data import layout_a
    classes = layout_a.folder_classes(config.data.root)
    with config.unlocked():
        config.data.classes = classes
        config.model.num_classes = len(classes)
        config.data.name = config.data.name or os.path.basename(os.path.normpath(config.data.root))
    log.info("%s: %d classes from %s: %s", config.data.name, len(classes), config.data.root, ", ".join(classes))
    return config


TORCHVISION_RESNET18 = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def check_visual_init(config):
    """A paper config trains ResNet18 from ImageNet weights: refuse to silently train it from scratch."""
    tc = config.train
    if tc.get("visual_init_required") and not tc.visual_init:
        raise MissingInput(
            f"{config.data.name}: the paper fine-tunes ResNet18 from ImageNet weights, and none were given. Pass "
            "--config.train.visual_init=<resnet18 .pth or .safetensors> (torchvision's file: "
            f"{TORCHVISION_RESNET18}, or torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1')"
            ".state_dict(), 'resnet18.pth')), or --config.train.visual_init=none to train the trunk from "
            "scratch on purpose.")
    if tc.visual_init and tc.visual_init != "none" and not os.path.isfile(os.path.expanduser(tc.visual_init)):
        raise MissingInput(f"train.visual_init: no such file {tc.visual_init!r} (a torchvision resnet18 "
                                f".pth or .safetensors, e.g. {TORCHVISION_RESNET18})")


def check_inputs(config):
    """-> (sources, transforms) of the config's data, after checking the ImageNet weights a paper config needs:
    when both the data and the weights are missing, one error names both."""
    problems, data = [], None
    try:
        check_visual_init(config)
    except MissingInput as e:
        problems.append(str(e))
    try:
        data = data_sources.build(config.data)
    except MissingInput as e:
        problems.append(str(e))
    if problems:
        raise MissingInput("\n\n".join(problems))
    return data


def class_names(config) -> list[str]:
    """Display names of the classes: the config's or the dataset preset's; `class k` for the synthetic data."""
    if config.data.get("classes"):
        return list(config.data.classes)
    if config.data.name == "synthetic":
        return [f"class {k}" for k in range(config.model.num_classes)]
    from avjax.data import layout_a
    return list(layout_a.class_names(config.data))
