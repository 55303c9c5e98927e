"""Your own videos: train and evaluate on any folder `prepare` made, with one flag.

    python -m avjax.data.prepare --videos <root>/<Class>/<ID>.mp4 --out DIR
    python -m avjax.main --config=configs/folder.py --workdir=WORK --config.data.root=DIR

Classes (and their number) are the folder's audio/<class>/ subfolders, the report is named after the
folder, and when its validation list is empty a seeded, stratified share of the training rows
(`data.val_fraction`, `data.val_seed`) becomes the validation split (logged). The recipe is the released
code's (SGD, lr audio 1e-3 / visual 1e-4 / head 1e-3, batch 48, 30 epochs, x0.1 at 10 and 20), trained for
more epochs (the decays scaled with them) where that is under `train.min_steps` optimizer steps; pass
`--config.train.visual_init=<resnet18 .pth>` for an ImageNet-initialised frame network (recommended).
Variants: fusion= (a name or all), modality=, defense=, runlocal.
"""
import ml_collections

from avjax.configs import base as config_base


def get_config(arg=None):
    variants = config_base.parse_arg(arg)
    config_base.check_variants(variants, allowed=config_base.SYNTHETIC_VARIANT_KEYS)
    c = config_base.base_config()
    c.seed = 0
    c.data.name = ""                        # '' = the folder's name
    c.data.preset = "folder"
    # 'files': jpg + wav decoded every step; 'decoded': avjax.data.decoded, written on first use, the same
    # examples ~10x faster (the input for accelerators); 'tfds': the array_record TFDS build
    c.data.source = "files"                 # 'files' | 'decoded' | 'tfds'
    c.data.decoded_dir = ""                 # '' = <root>/decoded
    c.data.root = ""                        # the folder `prepare` wrote (audio/, frames/, train/val/test.csv)
    c.data.audio_root = ""
    c.data.frames_root = ""
    c.data.csv = ml_collections.ConfigDict(dict(train="", val="", test=""))
    c.data.on_error = "raise"               # 'skip': drop bad examples and report them
    c.data.workers = 2
    c.data.classes = ()                     # filled from the folder
    c.data.val_fraction = 0.1               # carved from train when the validation list is empty
    c.data.val_seed = 0
    c.model.num_classes = 0                 # filled from the folder
    c.model.width = 1.0
    c.train.batch_size = 48
    c.train.num_epochs = 30
    c.train.lr_steps = (10, 20)
    c.train.min_steps = 1000                # a folder of a hundred clips is a few batches an epoch
    c.eval.batch_size = 16
    c.eval.units = "normalized"
    config_base.apply_common_variants(c, variants)
    if variants.get("runlocal"):
        config_base.runlocal_media(c)
    return c
