"""Validation images enhanced by several checkpoints, side by side: input | each model | target,
with each output's PSNR/SSIM. The images are the validation set of the first checkpoint's config
(all checkpoints must have been trained on it), at its validation geometry.

    python scripts/side_by_side.py docs/img/recipe_samples.png \
        "quick + corrected=outputs/versus/.../best_model.pth" "recipe=outputs/.../best_model.pth"
"""
from __future__ import annotations

import argparse
import sys

import torch
from matplotlib.figure import Figure

from remdinet.checkpoint import CheckpointError, load_model
from remdinet.colour import denormalize
from remdinet.data import DataError, build_data
from remdinet.metrics import psnr, ssim


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("models", nargs="+", metavar="LABEL=CHECKPOINT")
    parser.add_argument("--images", type=int, default=4,
                        help="validation images to show, spread evenly over the set")
    args = parser.parse_args(argv)
    try:
        models = []
        for item in args.models:
            label, sep, path = item.partition("=")
            if not sep:
                parser.error(f"{item!r}: expected LABEL=CHECKPOINT")
            model, cfg = load_model(path)
            models.append((label, model.eval(), cfg))
        val = build_data(models[0][2]).val
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = min(args.images, len(val))
    # evenly spread: neighbouring images of the embedded set are crops of one photograph
    picks = [round(i * (len(val) - 1) / max(rows - 1, 1)) for i in range(rows)]
    cols = len(models) + 2
    fig = Figure(figsize=(2.2 * cols, 2.4 * rows))
    with torch.no_grad():
        for r, index in enumerate(picks):
            sample = val[index]
            panels = [("input", denormalize(sample["input"][None])[0])]
            for label, model, _cfg in models:
                out = model(sample["input"][None])["enhanced"].clamp(0.0, 1.0)
                target = sample["target"][None]
                panels.append((f"{label}\n{float(psnr(out, target)):.2f} dB / "
                               f"{float(ssim(out, target)):.3f}", out[0]))
            panels.append(("target", sample["target"]))
            for c, (title, image) in enumerate(panels):
                ax = fig.add_subplot(rows, cols, r * cols + c + 1)
                ax.imshow(image.permute(1, 2, 0).clamp(0.0, 1.0).numpy())
                ax.set_title(title, fontsize=7)
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({rows} validation images x {len(models)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
