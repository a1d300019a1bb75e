"""The committed sample the preprocessing equivalence test runs on (`data/equivalence-photos.zip`).

    python -m tests.pipeline.images.equivalence_sample     # rewrites data/equivalence-photos.zip

Photo-like scenes drawn with Pillow, one per case the preprocessing branches on: dark garments on white and
light ones on black, coloured floors, a model wearing the garment (face, arms, trousers), a tan boot (all
"skin"), pairs of shoes, a print with a hole, transparent cut-outs, greyscale, 16-bit, EXIF-rotated and
large JPEGs, odd aspect ratios. The expected arrays (`data/equivalence-expected.npz`) were written once by the
preprocessing this release replaced (scipy/Pillow, commit c06630e), so the test pins the new one against it.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).parent / "data"
SKIN = (224, 172, 140)


def _noise(img: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    a = np.asarray(img, np.float32)
    return Image.fromarray(np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8), img.mode)


def _top(d: ImageDraw.ImageDraw, x: int, y: int, w: int, h: int, fill, sleeves: bool = True) -> None:
    d.rectangle((x, y, x + w, y + h), fill=fill)
    if sleeves:
        d.polygon([(x, y), (x - w // 3, y + h // 2), (x - w // 5, y + h // 2 + 10), (x, y + h // 4)], fill=fill)
        d.polygon([(x + w, y), (x + w + w // 3, y + h // 2), (x + w + w // 5, y + h // 2 + 10), (x + w, y + h // 4)],
                  fill=fill)


def scenes(seed: int = 0) -> list[tuple[str, bytes]]:
    """(name, file bytes) for every case."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, bytes]] = []

    def save(name: str, img: Image.Image, fmt: str = "JPEG", **kw) -> None:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}) | kw)
        out.append((name, buf.getvalue()))

    for i, (bg, fg) in enumerate([((250, 250, 248), (30, 35, 60)), ((20, 20, 22), (220, 210, 200)),
                                  ((200, 170, 120), (40, 90, 160)), ((120, 120, 125), (200, 40, 40))]):
        img = Image.new("RGB", (400, 500), bg)
        d = ImageDraw.Draw(img)
        _top(d, 130, 120, 140, 220, fg)
        save(f"top-{i}.jpg", _noise(img.filter(ImageFilter.GaussianBlur(1)), rng, 4))
    # A model wearing a pullover: head, neck, arms along the body, trousers, shoes.
    for i, (jumper, legs) in enumerate([((150, 30, 40), (30, 30, 50)), ((230, 225, 215), (60, 70, 110)),
                                        ((60, 90, 60), (200, 190, 170))]):
        img = Image.new("RGB", (300, 450), (246, 246, 246))
        d = ImageDraw.Draw(img)
        d.ellipse((125, 20, 175, 85), fill=SKIN)
        d.rectangle((140, 80, 160, 100), fill=SKIN)
        d.rectangle((95, 100, 205, 250), fill=jumper)
        d.rectangle((75, 105, 95, 245), fill=jumper)
        d.rectangle((205, 105, 225, 245), fill=jumper)
        d.rectangle((75, 245, 95, 262), fill=SKIN)
        d.rectangle((205, 245, 225, 262), fill=SKIN)
        d.rectangle((100, 250, 148, 420), fill=legs)
        d.rectangle((152, 250, 200, 420), fill=legs)
        d.rectangle((95, 420, 150, 435), fill=(20, 20, 20))
        d.rectangle((150, 420, 205, 435), fill=(20, 20, 20))
        save(f"worn-{i}.jpg", _noise(img.filter(ImageFilter.GaussianBlur(0.8)), rng, 3))
    # Shoes: a pair, a tan boot, a sandal of straps.
    img = Image.new("RGB", (500, 300), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((40, 150, 220, 230), 30, fill=(30, 30, 30))
    d.rounded_rectangle((270, 140, 460, 225), 30, fill=(30, 30, 30))
    save("pair.jpg", _noise(img, rng, 3))
    img = Image.new("RGB", (400, 400), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.rectangle((150, 60, 250, 300), fill=SKIN)
    d.rounded_rectangle((150, 260, 340, 340), 25, fill=SKIN)
    save("tan-boot.jpg", img)
    img = Image.new("RGB", (420, 300), (245, 245, 240))
    d = ImageDraw.Draw(img)
    for k in range(5):
        d.line((60 + 60 * k, 80, 120 + 50 * k, 240), fill=(90, 50, 20), width=9)
    d.line((50, 240, 380, 240), fill=(90, 50, 20), width=14)
    save("sandal.jpg", _noise(img, rng, 2))
    # A bag with a handle and a hole; a dress on a patterned floor.
    img = Image.new("RGB", (360, 360), (235, 232, 228))
    d = ImageDraw.Draw(img)
    d.rectangle((80, 150, 280, 320), fill=(110, 60, 30))
    d.arc((120, 60, 240, 220), 180, 360, fill=(110, 60, 30), width=12)
    d.rectangle((160, 210, 200, 240), fill=(235, 232, 228))
    save("bag.png", img, "PNG")
    floor = (rng.integers(150, 190, (90, 60, 3))).astype(np.uint8)
    img = Image.fromarray(floor).resize((300, 450), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(img)
    d.polygon([(130, 60), (170, 60), (230, 400), (70, 400)], fill=(30, 30, 140))
    save("dress-floor.jpg", img)
    # Transparent cut-outs, greyscale, 16-bit, EXIF-rotated, large, odd shapes.
    for i, fg in enumerate([(240, 240, 240, 255), (20, 20, 20, 255)]):
        img = Image.new("RGBA", (300, 380), (0, 0, 0, 0))
        _top(ImageDraw.Draw(img), 90, 80, 120, 200, fg)
        save(f"cutout-{i}.png", img, "PNG")
    grey = Image.new("L", (240, 320), 250)
    ImageDraw.Draw(grey).rectangle((70, 30, 170, 290), fill=40)
    save("grey.jpg", grey)
    deep = Image.fromarray((np.asarray(grey, np.uint16) * 257).astype(np.uint16))
    save("grey16.png", deep, "PNG")
    upright = Image.new("RGB", (300, 400), (255, 255, 255))
    ImageDraw.Draw(upright).rectangle((110, 40, 190, 360), fill=(30, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif6.jpg", upright.transpose(Image.Transpose.ROTATE_90), exif=exif)
    big = Image.new("RGB", (2000, 2400), (250, 250, 250))
    _top(ImageDraw.Draw(big), 700, 500, 600, 1500, (40, 40, 40))
    save("large.jpg", big)
    thin = Image.new("RGB", (900, 120), (255, 255, 255))
    ImageDraw.Draw(thin).rectangle((50, 30, 850, 90), fill=(50, 20, 20))
    save("thin.webp", thin, "WEBP", quality=90)
    save("tiny.gif", Image.new("P", (20, 30), 3), "GIF")
    return out


def build(path: Path = HERE / "equivalence-photos.zip") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in scenes():
            zf.writestr(name, data)
    return path


if __name__ == "__main__":
    print(build())
