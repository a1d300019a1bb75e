"""Contact sheets of what preprocessing hands the network: each photo beside its 28x28 input.

    python -m training.contact_sheet --classes Pullover,Coat,Shirt --out runs/sheets/held.png \\
        [--preprocess '{"garment": true}'] [--logits runs/r01/held_logits.npz]

Only the held-out part of realphoto-train is shown by default (`--part train` for the rest).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.images.imaging import decode_image
from pipeline.images.preprocess import PreprocessConfig, prepare
from training.photoset import class_index, load_photos
from training.realphoto_split import split_photos
from training.report import CLASSES

CELL = 112


def _tile(img: Image.Image) -> Image.Image:
    img = img.convert("RGB")
    img.thumbnail((CELL, CELL))
    canvas = Image.new("RGB", (CELL, CELL), (40, 40, 40))
    canvas.paste(img, ((CELL - img.width) // 2, (CELL - img.height) // 2))
    return canvas


def _input_tile(x: np.ndarray, cfg: PreprocessConfig) -> Image.Image:
    a = np.clip((x * cfg.std + cfg.mean) * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(a).resize((CELL, CELL), Image.Resampling.NEAREST).convert("RGB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Photo / 28x28 input contact sheet.")
    p.add_argument("--photos", type=Path, default=Path("../shared/datasets/realphoto-train"))
    p.add_argument("--part", choices=("held", "train"), default="held")
    p.add_argument("--classes", default="Pullover,Coat,Shirt")
    p.add_argument("--preprocess", default="{}", help="JSON overrides of PreprocessConfig fields")
    p.add_argument("--logits", type=Path, default=None, help="held_logits.npz of a run, to print predictions")
    p.add_argument("--limit", type=int, default=60)
    p.add_argument("--cols", type=int, default=6)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = PreprocessConfig.from_dict({**PreprocessConfig().to_dict(), **json.loads(args.preprocess)})
    wanted = {class_index(c, CLASSES) for c in args.classes.split(",")}
    train, held = split_photos(load_photos(args.photos, CLASSES))
    photos = [ph for ph in (held if args.part == "held" else train) if ph.label in wanted][: args.limit]
    preds: dict[str, int] = {}
    if args.logits is not None:
        z = np.load(args.logits)
        preds = dict(zip(z["name"].tolist(), z["logits"].argmax(1).tolist()))
    rows = (len(photos) + args.cols - 1) // args.cols
    sheet = Image.new("RGB", (args.cols * 2 * CELL, rows * (CELL + 14)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for k, ph in enumerate(photos):
        r, c = divmod(k, args.cols)
        x0, y0 = c * 2 * CELL, r * (CELL + 14)
        sheet.paste(_tile(decode_image(ph.data)), (x0, y0))
        sheet.paste(_input_tile(prepare(ph.data, cfg), cfg), (x0 + CELL, y0))
        guess = f" -> {CLASSES[preds[ph.name]]}" if ph.name in preds else ""
        draw.text((x0 + 2, y0 + CELL), f"{CLASSES[ph.label][:8]}{guess} {ph.source[:10]}", fill=(255, 255, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({len(photos)} photos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
