"""Train the photo model: EfficientNet-Lite0 from ImageNet, head first, then a gentle fine-tune of its top.

    python -m training.photo_train --photos ../shared/datasets/realphoto-train --out weights/photo
    fashion-batch train --model photo --photos my-photos.zip     # from the shipped photo model, into runs/
    python -m training.photo_train --dry-run        # a handful of photos, a few steps, a temp dir

1. realphoto-train is split (training/realphoto_split.py); the held-out quarter selects and calibrates,
   nothing else. realphoto-dev is never read here.
2. Data (training/photo_data.py): training photos clean and `--variants` times augmented, Fashion-MNIST
   rendered as photos and as grey originals; all letterboxed as inference does, then through the frozen bottom
   of the network once (training/photo_net.py), cached.
3. LP: the new classifier is fitted on the pretrained features (class-balanced). FT: the top blocks and the
   classifier fine-tune from there with SGD at a small rate, BatchNorm frozen, plus a distillation term towards
   the ImageNet zero-shot head on real photos (`--distill`) so what ImageNet knew of sweaters stays.
4. WiSE-FT: the weights are interpolated between LP and FT; `--wise auto` picks the mix on held-out photos.
5. A temperature fitted on the held-out photos is folded into the classifier, and the model is exported to
   every backend (training/photo_export.py) with its manifest.
`--resume DIR` starts from a shipped photo model (its model.pt) instead: a user's own labelled photos.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.images.letterbox import LetterboxConfig
from pipeline.inference.efficientnet import ARCH_NAME, build, imagenet_pretrained
from training import data
from training.calibration import ece, fit_temperature, fold_temperature, softmax
from training.photo_augment import PhotoAugment
from training.photo_data import fashion_squares, photo_squares
from training.photo_net import cache_bottom, set_train_mode, top_features, top_logits, trainable, zero_shot_probs
from training.photoset import load_photos
from training.realphoto_split import split_photos
from training.report import CLASSES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=Path, default=Path("../shared/datasets/realphoto-train"),
                   help="labelled photos (folder or ZIP: labels.csv or one folder per class)")
    p.add_argument("--out", type=Path, default=Path("runs/photo-model"),
                   help="where the exported model goes (make train-photo: weights/photo)")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/photo-cache"))
    p.add_argument("--resume", type=Path, default=None, help="a photo model folder to start from (its model.pt)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--variants", type=int, default=4, help="augmented copies of each training photo")
    p.add_argument("--fm-rendered", type=int, default=300, help="Fashion-MNIST per class rendered as photos")
    p.add_argument("--fm-grey", type=int, default=300, help="Fashion-MNIST per class as grey originals")
    p.add_argument("--fm-weight", type=float, default=0.5, help="loss weight of Fashion-MNIST images")
    p.add_argument("--lp-steps", type=int, default=400)
    p.add_argument("--lp-wd", type=float, default=1e-3)
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--distill", type=float, default=0.5, help="weight of the zero-shot distillation term")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--wise", default="auto", help="FT share of the weights (0..1) or 'auto' (held-out)")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="a handful of images and steps, into a temp dir")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cached(path: Path, build_fn) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = build_fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def build_data(args: argparse.Namespace, cfg: LetterboxConfig) -> dict[str, dict[str, np.ndarray]]:
    """Squares and labels of every training and held-out image, cached by what they depend on."""
    photos = load_photos(args.photos, CLASSES)
    train, held = split_photos(photos)
    if args.dry_run:
        train, held = train[::max(1, len(train) // 24)], held[::max(1, len(held) // 12)]
    key = hashlib.sha256(json.dumps([cfg.to_dict(), args.variants, args.fm_rendered, args.fm_grey, args.seed,
                                     sorted(p.name for p in photos)]).encode()).hexdigest()[:12]
    aug = PhotoAugment()
    out: dict[str, dict[str, np.ndarray]] = {}

    def photos_part(part, variants):
        def make():
            sq, idx = photo_squares(part, cfg, variants=variants, seed=args.seed, aug=aug)
            return {"x": sq, "y": np.array([part[i].label for i in idx]),
                    "src": np.array([part[i].source for i in idx]), "photo": idx}
        return make

    out["train"] = _cached(args.cache_dir / f"train-{key}.npz", photos_part(train, args.variants))
    out["held"] = _cached(args.cache_dir / f"held-{key}.npz", photos_part(held, 0))
    if args.fm_rendered or args.fm_grey:
        images, labels = data.load_split("train", args.data_dir)
        for name, n, rendered in (("fm_rendered", args.fm_rendered, True), ("fm_grey", args.fm_grey, False)):
            if n:
                out[name] = _cached(args.cache_dir / f"{name}-{key}.npz", lambda n=n, r=rendered: dict(zip(
                    ("x", "y"), fashion_squares(images, labels, n, cfg, args.seed + (7 if r else 11), r))))
        t_images, t_labels = data.load_split("test", args.data_dir)
        out["fm_test"] = _cached(args.cache_dir / f"fm_test-{key}.npz", lambda: dict(zip(
            ("x", "y"), fashion_squares(t_images, t_labels, 10 if args.dry_run else 100, cfg, 5, False))))
    return out


def _balanced_weights(y: np.ndarray, total: float) -> np.ndarray:
    counts = np.bincount(y, minlength=10).astype(np.float64)
    w = np.where(counts[y] > 0, 1.0 / np.maximum(counts[y], 1), 0.0)
    return w * (total / w.sum())


def fit_head(feats: torch.Tensor, y: torch.Tensor, w: torch.Tensor, steps: int, wd: float,
             head: torch.nn.Linear) -> None:
    """Fit a linear classifier on fixed features: weighted cross-entropy, Adam, full batch."""
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=0)
    for _ in range(steps):
        opt.zero_grad()
        loss = (F.cross_entropy(head(feats), y, reduction="none") * w).sum() / w.sum()
        loss = loss + wd * head.weight.pow(2).sum()
        loss.backward()
        opt.step()


def report(name: str, logits: np.ndarray, y: np.ndarray, src: np.ndarray | None = None) -> dict:
    """Accuracy, per-class accuracy, ECE (15 bins) of logits; printed and returned."""
    probs = softmax(logits)
    pred = probs.argmax(1)
    per_class = {CLASSES[c]: round(float((pred[y == c] == c).mean()), 3) for c in range(10) if (y == c).any()}
    out = {"accuracy": round(float((pred == y).mean()), 4), "ece15": round(ece(probs, y), 4), "per_class": per_class}
    if src is not None:
        out["per_source"] = {s: round(float((pred[src == s] == y[src == s]).mean()), 3) for s in np.unique(src)}
    _log(f"{name}: acc {out['accuracy']:.4f} ece {out['ece15']:.4f} | " +
         " ".join(f"{k[:5]} {v:.2f}" for k, v in per_class.items()))
    return out


def finetune(model, maps, y, w, zs, args) -> None:
    """SGD on the top blocks and classifier over cached maps; `zs` are zero-shot targets (NaN rows: none)."""
    params = trainable(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    steps = max(1, int(args.epochs * len(maps) / args.batch)) if not args.dry_run else 3
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(args.seed)
    p = w / w.sum()
    has_zs = ~np.isnan(zs[:, 0])
    t0 = time.time()
    for step in range(steps):
        idx = rng.choice(len(maps), args.batch, p=p)
        set_train_mode(model)
        logits = model._fc(model._dropout(top_features(model, torch.from_numpy(maps[idx]).float())))
        loss = F.cross_entropy(logits, torch.from_numpy(y[idx]), label_smoothing=args.label_smoothing)
        sel = has_zs[idx]
        if args.distill and sel.any():
            # Learning without forgetting: keep the ImageNet head's view of the classes it has (not Shirt).
            target = torch.from_numpy(zs[idx][sel]).float()
            logp = F.log_softmax(logits[torch.from_numpy(sel)], 1)
            keep = target.sum(1) > 0
            loss = loss + args.distill * -(target[keep] * logp[keep]).sum(1).mean() if keep.any() else loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            _log(f"ft step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f} s)")
    model.eval()


def interpolate(a, b, alpha: float):
    """WiSE-FT: the model whose every weight is (1 - alpha) * a + alpha * b."""
    out = copy.deepcopy(a)
    sa, sb = a.state_dict(), b.state_dict()
    out.load_state_dict({k: (1 - alpha) * v + alpha * sb[k] if v.is_floating_point() else v for k, v in sa.items()})
    return out.eval()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tmp = None
    if args.dry_run:
        tmp = tempfile.TemporaryDirectory()
        args.cache_dir = Path(tmp.name) / "cache"
        if args.out == parse_args([]).out:
            args.out = Path(tmp.name) / "out"
        args.fm_rendered, args.fm_grey, args.variants, args.lp_steps = 2, 2, 1, 5
    cfg = LetterboxConfig(size=args.size)
    started = time.time()
    sets = build_data(args, cfg)
    _log("data: " + ", ".join(f"{k} {len(v['x'])}" for k, v in sets.items()))

    base = imagenet_pretrained().eval()
    if args.resume:
        start = build(num_classes=10)
        start.load_state_dict(torch.load(args.resume / "model.pt", map_location="cpu", weights_only=True))
    else:
        start = build(num_classes=10)
        start.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("_fc.")}, strict=False)
    start = start.to(memory_format=torch.channels_last).eval()
    key = hashlib.sha256(json.dumps([str(args.resume), cfg.to_dict()]).encode()).hexdigest()[:8]
    maps = {name: _cached(args.cache_dir / f"maps-{name}-{key}-{len(s['x'])}.npz",
                          lambda s=s: {"m": cache_bottom(start, s["x"], cfg)})["m"] for name, s in sets.items()}
    _log(f"bottom maps cached ({time.time() - started:.0f} s)")

    held = sets["held"]
    zs_held = zero_shot_probs(top_logits(base, maps["held"]))
    results = {"zero_shot_heldout": report("zero-shot held-out", np.log(np.maximum(zs_held, 1e-9)), held["y"],
                                           held["src"])}
    # Training set: photos (class-balanced) and Fashion-MNIST (weighted by --fm-weight), one pool.
    names = [n for n in ("train", "fm_rendered", "fm_grey") if n in sets]
    x_maps = np.concatenate([maps[n] for n in names])
    y = np.concatenate([sets[n]["y"] for n in names]).astype(np.int64)
    w = np.concatenate([_balanced_weights(sets[n]["y"], len(sets[n]["y"]) * (1 if n == "train" else args.fm_weight))
                        for n in names])
    zs = np.full((len(y), 10), np.nan)
    zs[:len(sets["train"]["y"])] = zero_shot_probs(top_logits(base, maps["train"]))

    lp = copy.deepcopy(start)
    if not args.resume:
        feats = torch.from_numpy(np.concatenate([_features(start, maps[n]) for n in names]))
        fit_head(feats, torch.from_numpy(y), torch.from_numpy(w).float(), args.lp_steps, args.lp_wd, lp._fc)
    results["lp_heldout"] = report("LP held-out", top_logits(lp, maps["held"]), held["y"], held["src"])
    ft = copy.deepcopy(lp)
    finetune(ft, x_maps, y, w, zs, args)
    results["ft_heldout"] = report("FT held-out", top_logits(ft, maps["held"]), held["y"], held["src"])

    alphas = [0.0, 0.25, 0.5, 0.75, 1.0] if args.wise == "auto" else [float(args.wise)]
    scored = []
    for a in alphas:
        m = interpolate(lp, ft, a)
        acc = float((top_logits(m, maps["held"]).argmax(1) == held["y"]).mean())
        scored.append((acc, a))
        _log(f"wise {a:.2f}: held-out acc {acc:.4f}")
    alpha = max(scored)[1]
    model = interpolate(lp, ft, alpha)
    held_logits = top_logits(model, maps["held"])
    temperature = fit_temperature(held_logits, held["y"])
    fold_temperature(model._fc, temperature)
    results["chosen_heldout"] = report(f"chosen (wise {alpha}, T {temperature:.3f}) held-out",
                                       top_logits(model, maps["held"]), held["y"], held["src"])
    if "fm_test" in sets:
        results["fm_test_sample"] = report("Fashion-MNIST test sample (grey)", top_logits(model, maps["fm_test"]),
                                           sets["fm_test"]["y"])
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(args.cache_dir / "heldout_logits.npz", **{  # for studies of the chosen model (training/experiments/)
        "held": top_logits(model, maps["held"]), "held_y": held["y"], "held_src": held["src"],
        "held_zero_shot": zs_held, **({"fm": top_logits(model, maps["fm_test"]), "fm_y": sets["fm_test"]["y"]}
                                      if "fm_test" in sets else {})})
    training = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    training.update({"wise_alpha": alpha, "wise_scores": [[a, round(s, 4)] for s, a in scored],
                     "temperature": round(temperature, 4), "minutes": round((time.time() - started) / 60, 1),
                     "command": "python -m training.photo_train " + " ".join(sys.argv[1:] if argv is None else argv)})
    if not args.no_export:
        from training.photo_export import export_photo

        export_photo(model.eval(), {"name": ARCH_NAME, "args": {"num_classes": 10, "dropout": 0.2}}, args.out,
                     cfg, calib=sets["train"]["x"], held=(held["x"], held["y"]), training=training,
                     results=results, quick=args.dry_run, data_dir=args.data_dir)
    _log(f"done in {(time.time() - started) / 60:.1f} min")
    if tmp is not None:
        tmp.cleanup()
    return 0


@torch.inference_mode()
def _features(model, maps: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([top_features(model, torch.from_numpy(maps[i:i + batch]).float()).numpy()
                           for i in range(0, len(maps), batch)])


if __name__ == "__main__":
    raise SystemExit(main())
