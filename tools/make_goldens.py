"""Write the committed golden file of the original PyTorch networks (needs the `torch` extra).

    python tools/make_goldens.py

Builds sound / frame / classifier nets in the original layout with seed-generated weights and
BatchNorm statistics calibrated by train-mode passes (so eval-mode activations are O(1) and the
statistics are far from their 0/1 defaults), runs them on seed-generated inputs and stores per-stage
activations, features and logits at a small size and at the paper's size (224^2, 65535 samples).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import golden_spec as gs  # noqa: E402


def build_original_nets(seed=gs.SEED, num_classes=gs.NUM_CLASSES):
    """-> (sound, frame, classifier, resnet) torch nets with generated weights and calibrated BN."""
    import torch

    from tests import torch_reference as tr

    torch.manual_seed(seed)
    sound, resnet = tr.ANet(), tr.ResNet18()
    frame, classifier = tr.FrameNet(resnet), tr.ClassifierConcat(num_classes)
    rng = np.random.default_rng([seed, 7])
    with torch.no_grad():
        for net in (sound, frame, classifier):
            for index, (key, tensor) in enumerate(net.state_dict().items()):
                if tensor.dim() >= 2:
                    tensor.copy_(torch.from_numpy(gs.generated_weight(seed, index, tuple(tensor.shape))))
                elif key.endswith(".weight"):
                    tensor.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, tensor.shape).astype(np.float32)))
                elif key.endswith(".bias"):
                    tensor.copy_(torch.from_numpy(rng.normal(0, 0.1, tensor.shape).astype(np.float32)))
        # Calibrate running statistics: cumulative averages over train-mode passes.
        for net in (sound, frame):
            for m in net.modules():
                if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    m.reset_running_stats()
                    m.momentum = None
            net.train()
        for k in range(3):
            image, audio = gs.make_inputs(seed + 100 + k, 64, 8191, batch=4)
            frame(tr.normalize(torch.from_numpy(image.transpose(0, 3, 1, 2)).float()))
            sound(torch.from_numpy(audio[:, None, :]).float())
        for net in (sound, frame):
            for m in net.modules():
                if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    m.momentum = 0.1
            net.eval()
    return sound, frame, classifier


def run_original(nets, image, audio, dtype):
    """Per-stage activations (NHWC / NLC like avjax), features and logits of the original nets."""
    import torch

    from tests import torch_reference as tr

    sound, frame, classifier = (n.to(dtype).eval() for n in nets)
    with torch.no_grad():
        x = tr.normalize(torch.from_numpy(image.transpose(0, 3, 1, 2)).to(dtype))
        a = torch.from_numpy(audio[:, None, :]).to(dtype)
        out = {f"stage/{k}": v.permute(0, 2, 3, 1).numpy() for k, v in tr.frame_stages(frame, x).items()}
        out.update({f"stage/{k}": v.permute(0, 2, 1).numpy() for k, v in tr.sound_stages(sound, a).items()})
        f_v, f_a = frame(x), sound(a)
        out.update(visual=f_v.numpy(), audio=f_a.numpy(), logits=classifier(f_v, f_a).numpy())
    return out


def main():
    import torch

    nets = build_original_nets()
    record = {"seed": np.int64(gs.SEED), "num_classes": np.int64(gs.NUM_CLASSES)}
    for part, net in zip(gs.PARTS, nets):
        sd = net.state_dict()
        keys = list(sd)
        record[f"{part}/keys"] = np.array(keys)
        record[f"{part}/ranks"] = np.array([sd[k].dim() for k in keys])
        record[f"{part}/shapes"] = np.array([list(sd[k].shape) + [0] * (4 - sd[k].dim()) for k in keys])
        for k in keys:
            if sd[k].dim() < 2:
                record[f"{part}/value/{k}"] = sd[k].numpy()
    for name, size in (("small", gs.SMALL), ("paper", gs.PAPER)):
        image, audio = gs.make_inputs(gs.SEED, **size)
        out = run_original(nets, image, audio, torch.float32)
        if name == "paper":
            out = {k: v for k, v in out.items() if not k.startswith("stage/")}
        record.update({f"{name}/{k}": v.astype(np.float32) for k, v in out.items()})
    os.makedirs(gs.GOLDEN_DIR, exist_ok=True)
    np.savez_compressed(gs.ORIGINAL_GOLDEN, **record)
    print(f"wrote {gs.ORIGINAL_GOLDEN} ({os.path.getsize(gs.ORIGINAL_GOLDEN) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
