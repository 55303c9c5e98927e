"""MIT-MUSIC solo (11 instruments) with the released code's recipe, on a prepared layout-A folder.

    python -m avjax.main --config=configs/music.py --workdir=DIR --config.data.root=/data/music \
        --config.train.visual_init=/path/to/resnet18-f37072fd.pth

Prepare the folder with `python -m avjax.data.prepare --preset music ...` (see README). Defaults follow
the code that produced the paper's numbers (SGD 0.9, wd 1e-4, lr audio 1e-3 / visual 1e-4 / head 1e-3,
100 epochs with x0.1 at (30, 60, 90), batch 36); `recipe=appendix` gives the appendix's stated recipe.
Trains the AV (concat) model and the two unimodal baselines, then evaluates FGSM / PGD / MIM at the
paper's eps (visual eps in ImageNet-normalised units). Expect hours per model on one GPU.
Variants: fusion= (a name or all), modality=, defense=, recipe=, protocol=paper|attack_script, runlocal.
"""
from avjax.configs import base as config_base
from avjax.configs.paper import paper_config


def get_config(arg=None):
    return paper_config("music", config_base.parse_arg(arg), num_classes=11, epochs=100,
                        lr_steps=(30, 60, 90), batch_size=36, doc_recipe=(100, (30, 60, 90)))
