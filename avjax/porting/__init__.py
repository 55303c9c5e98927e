"""PyTorch weights -> avjax: torchvision's ResNet18, the original code's checkpoints, safe `.pth` reading.

    module, variables = avjax.porting.load_original_checkpoint("ckpt_dir", num_classes=11)
    trunk = avjax.porting.resnet18_from_torchvision("resnet18-f37072fd.pth")

`python -m avjax.porting.convert SOURCE OUT` writes an original checkpoint as an avjax model directory;
`save_original_checkpoint(module, variables, DIR)` goes the other way (the released code's three files).
"""
from avjax.porting.torch_state import (CheckpointError, find_original_files, load_original_checkpoint,
                                       load_state_dict, original_classifier_table, original_frame_table,
                                       original_sound_table, port_original_states, port_state_dict,
                                       resnet18_from_torchvision, resnet18_table)
from avjax.porting.export import (original_state_dicts, resnet18_state_dict, save_original_checkpoint,
                                  save_state_dict, state_dict_from_variables)

__all__ = ["CheckpointError", "find_original_files", "load_original_checkpoint", "load_state_dict",
           "original_classifier_table", "original_frame_table", "original_sound_table",
           "original_state_dicts", "port_original_states", "port_state_dict", "resnet18_from_torchvision",
           "resnet18_state_dict", "resnet18_table", "save_original_checkpoint", "save_state_dict",
           "state_dict_from_variables"]
