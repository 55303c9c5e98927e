"""AVE (28 events) with the released code's recipe, on a prepared layout-A folder.

    python -m avjax.main --config=configs/ave.py --workdir=DIR --config.data.root=/data/ave \
        --config.train.visual_init=/path/to/resnet18-f37072fd.pth

Prepare the folder with `python -m avjax.data.prepare --preset ave ...` (see README). Defaults follow
the code that produced the paper's numbers (SGD 0.9, wd 1e-4, lr audio 1e-3 / visual 1e-4 / head 1e-3,
30 epochs with x0.1 at (10, 20), batch 48); `recipe=appendix` gives the appendix's stated recipe.
Trains the AV (concat) model and the two unimodal baselines, then evaluates FGSM / PGD / MIM at the
paper's eps (visual eps in ImageNet-normalised units). Expect hours per model on one GPU.
Variants: fusion= (a name or all), modality=, defense=, recipe=, protocol=paper|attack_script, runlocal.
"""
from avjax.configs import base as config_base
from avjax.configs.paper import paper_config


def get_config(arg=None):
    return paper_config("ave", config_base.parse_arg(arg), num_classes=28, epochs=30,
                        lr_steps=(10, 20), batch_size=48, doc_recipe=(100, (30, 60, 90)))
