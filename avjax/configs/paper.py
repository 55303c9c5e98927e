"""The paper's recipe on a prepared layout-A dataset, shared by configs/{ave,music,kinetics}.py."""
import ml_collections

from avjax.configs import base as config_base


def paper_config(preset, variants, *, num_classes, epochs, lr_steps, batch_size, doc_recipe):
    config_base.check_variants(variants)
    c = config_base.base_config()
    c.seed = 1234
    c.data.name = preset
    c.data.preset = preset
    c.data.source = "files"                 # 'tfds': read the array_record TFDS build instead
    c.data.root = ""                        # prepared layout-A folder (audio/, frames/, CSVs)
    c.data.audio_root = ""                  # override audio/ and frames/ separately if needed
    c.data.frames_root = ""
    c.data.csv = ml_collections.ConfigDict(dict(train="", val="", test=""))
    c.data.tfds_dir = "~/tensorflow_datasets"
    c.data.on_error = "raise"               # 'skip': drop bad examples and report them
    c.data.workers = 2
    c.data.classes = ()                     # () = the preset's class order
    c.model.num_classes = num_classes
    c.model.width = 1.0
    c.train.batch_size = batch_size
    c.train.num_epochs = epochs
    c.train.lr_steps = lr_steps
    c.eval.batch_size = 16
    c.eval.units = "normalized"
    if variants.get("recipe") == "appendix":
        # The appendix's stated recipe (docs/method.md, "Training recipe"): audio 1e-4 / visual 1e-3, batch 48, its epochs.
        c.train.lr = ml_collections.ConfigDict(dict(audio=1e-4, visual=1e-3, head=1e-3))
        c.train.batch_size = 48
        c.train.num_epochs, c.train.lr_steps = doc_recipe
    elif variants.get("recipe") not in (None, "code"):
        raise ValueError(f"unknown recipe {variants['recipe']!r}: 'code' (default) or 'appendix'")
    config_base.apply_common_variants(c, variants)
    if variants.get("runlocal"):
        c.data.preprocess.image_size = 32
        c.data.preprocess.audio_len = 4095
        c.data.workers = 0
        c.model.width = 0.125
        c.train.batch_size = 2
        c.train.num_epochs = 1
        c.eval.batch_size = 2
        c.eval.steps = 2
        c.eval.max_examples = 2
    return c
