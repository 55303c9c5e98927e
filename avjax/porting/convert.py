"""Convert an original-code checkpoint (sound_/frame_/classifier_*.pth) into an avjax model directory.

    python -m avjax.porting.convert SOURCE OUT [--tag best] [--num-classes C]

SOURCE is the original checkpoint directory or one of its three files (.pth or .safetensors).
OUT receives `model.json` + `variables/` (see avjax.model_dir), loadable with
`avjax.model_dir.load_model(OUT)`.
"""
import argparse
import sys

from avjax import model_dir, porting


def convert(source, out, *, tag=None, num_classes=None) -> dict:
    module, variables = porting.load_original_checkpoint(source, num_classes, tag=tag)
    model_config = {"modality": "av", "fusion": module.fusion, "visual_pool": module.visual_pool,
                    "num_classes": module.num_classes, "width": 1.0}
    model_dir.save_model(out, model_config, variables)
    return model_config


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m avjax.porting.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--tag", default=None, help="checkpoint tag, e.g. best or latest")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="expected number of classes (checked against fc1)")
    args = parser.parse_args(argv)
    try:
        model_config = convert(args.source, args.out, tag=args.tag, num_classes=args.num_classes)
    except (porting.CheckpointError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {model_config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
