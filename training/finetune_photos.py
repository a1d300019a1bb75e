"""Fine-tune the shipped network on real photos mixed with Fashion-MNIST replay, then calibrate it.

    python -m training.finetune_photos --photos ../shared/datasets/realphoto-train \\
        --resume weights/fmnist/model.pt --steps 600 --threads 1 --out runs/best
    python -m training.finetune_photos --dry-run          # a few steps, a handful of photos, temp dir

1. The photos are split deterministically (training/realphoto_split.py); the held-out part chooses and
   calibrates, nothing else. realphoto-dev is never read here.
2. Every training photo is augmented `--variants` times as a PHOTO and prepared through the same
   preprocessing as inference; held-out photos are prepared once, clean. Both are cached as npz.
3. Each step trains on `--fm-batch` Fashion-MNIST images (with the 28x28 augmentation of training/augment.py)
   and `--photo-batch` cached photo variants drawn class-balanced (`--balance` 0) or by n_class ** balance,
   with an optional per-class loss weight (`--class-weight Pullover=2,Coat=1.5`). SGD, cosine LR.
4. The held-out photos fit a temperature (training/calibration.py, `--calibration`; the default,
   heldout, was chosen by leave-one-source-out on the held-out photos, EXPERIMENTS.md section 7),
   which is folded into the last layer, and the model is exported to every backend (training/export.py) with
   the preprocessing it was trained with. For the augmented methods each held-out photo is also augmented
   `--calibration-variants` times as a photo (training/photo_augment.py) and prepared; those are cached too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.images.preprocess import PreprocessConfig
from pipeline.inference.model import build_model
from training import data
from training.augment import AugmentConfig, augment_batch
from training.calibration import (
    CALIBRATION_METHODS,
    balanced_ece,
    ece,
    fit_calibration,
    fold_temperature,
    leave_one_source_out,
    softmax,
)
from training.photo_augment import (
    PhotoAugment,
    cache_key,
    cached,
    prepare_augmented,
    prepare_clean,
)
from training.photoset import Photo, class_index, load_photos
from training.realphoto_split import split_photos
from training.report import CLASSES

DEFAULT_CALIBRATION = "heldout"  # lowest mean leave-one-source-out ECE of the methods (EXPERIMENTS.md section 7)
CALIBRATION_SEED_OFFSET = 1000  # held-out variants draw other random numbers than the training variants


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Fine-tune on real photos + Fashion-MNIST replay; calibrate; export.")
    p.add_argument("--photos", type=Path, default=Path("../shared/datasets/realphoto-train"),
                   help="labelled photo folder or ZIP (labels.csv or one sub-folder per class)")
    p.add_argument("--resume", type=Path, default=None,
                   help="the model.pt to start from (default: the shipped weights, FB_WEIGHTS_DIR)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--fm-batch", type=int, default=96)
    p.add_argument("--photo-batch", type=int, default=32)
    p.add_argument("--fm-p-any", type=float, default=0.3, help="share of Fashion-MNIST images augmented")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--balance", type=float, default=0.0, help="photo class sampling ~ n_class ** balance")
    p.add_argument("--class-weight", default="", help="photo loss weights, e.g. 'Pullover=2,Coat=1.5'")
    p.add_argument("--photo-loss-weight", type=float, default=1.0)
    p.add_argument("--bn-eval", action="store_true", help="keep BatchNorm statistics frozen (Fashion-MNIST's)")
    p.add_argument("--distill", type=float, default=0.0,
                   help="weight of a KL term keeping Fashion-MNIST outputs close to the resumed model's")
    p.add_argument("--wise", type=float, default=1.0,
                   help="finally interpolate weights: wise * fine-tuned + (1 - wise) * resumed (WiSE-FT)")
    p.add_argument("--variants", type=int, default=12, help="augmented variants cached per training photo")
    p.add_argument("--calibration", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION,
                   help="how the temperature is fitted on the held-out photos (training/calibration.py)")
    p.add_argument("--calibration-variants", type=int, default=8,
                   help="augmented variants of each held-out photo for the -augmented calibration methods")
    p.add_argument("--preprocess", default="{}", help="JSON overrides of PreprocessConfig fields")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-export", dest="export", action="store_false", help="write model.pt + results only")
    p.add_argument("--dry-run", action="store_true", help="3 steps on 40 photos, quick export to a temp dir")
    return p.parse_args(argv)


def photo_arrays(args: argparse.Namespace, cfg: PreprocessConfig) -> dict[str, np.ndarray]:
    """Cached arrays: augmented training variants (x, y) and the clean held-out photos (x, y, source)."""
    photos = load_photos(args.photos, CLASSES)
    if args.dry_run:
        photos = photos[:40]
    train, held = split_photos(photos)
    aug = PhotoAugment()
    key = cache_key(train, cfg, aug, args.variants, args.seed)
    tr = cached(args.cache_dir / f"train-{key}.npz", lambda: _train_arrays(train, cfg, aug, args))
    return {"x_train": tr["x"], "y_train": tr["y"], "n_train_photos": np.array(len(train)),
            **held_out_arrays(held, cfg, args)}


def held_out_arrays(held: list[Photo], cfg: PreprocessConfig, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Cached arrays of the held-out photos: clean (x, y, source, name) and `args.calibration_variants`
    augmented variants of each (x, y, source of the photo each came from), for the calibration fit."""
    key = cache_key(held, cfg, None, 1, 0)
    ho = cached(args.cache_dir / f"held-{key}.npz", lambda: {
        "x": prepare_clean(held, cfg), "y": np.array([p.label for p in held]),
        "source": np.array([p.source for p in held]), "name": np.array([p.name for p in held])})
    out = {"x_held": ho["x"], "y_held": ho["y"], "src_held": ho["source"], "name_held": ho["name"]}
    k, seed = args.calibration_variants, args.seed + CALIBRATION_SEED_OFFSET
    if k > 0:
        aug = PhotoAugment()
        va = cached(args.cache_dir / f"held-aug-{cache_key(held, cfg, aug, k, seed)}.npz",
                    lambda: _held_variants(held, cfg, aug, k, seed))
        out.update({"x_held_aug": va["x"], "y_held_aug": va["y"], "src_held_aug": va["source"]})
    return out


def _held_variants(held: list[Photo], cfg: PreprocessConfig, aug: PhotoAugment, k: int,
                   seed: int) -> dict[str, np.ndarray]:
    t0 = time.time()
    x, idx = prepare_augmented(held, cfg, aug, k, seed)
    print(f"prepared {len(held)} held-out photos x {k} variants in {time.time() - t0:.0f} s", flush=True)
    return {"x": x, "y": np.array([p.label for p in held])[idx], "source": np.array([p.source for p in held])[idx]}


def calibrate(model: torch.nn.Module, arrays: dict[str, np.ndarray], method: str,
              scale: float = 1.0) -> tuple[float, dict, np.ndarray]:
    """(temperature fitted by `method`, the calibration record, clean held-out logits). The record has the
    held-out ECE15 (plain and class-balanced) before and after, and for every method its temperature and
    leave-one-source-out class-balanced ECE15. `scale` multiplies the logits first (to undo a folded T)."""
    yh, src = arrays["y_held"], arrays["src_held"]
    z = logits_of(model, arrays["x_held"]) * scale
    aug = None
    if "x_held_aug" in arrays:
        aug = (logits_of(model, arrays["x_held_aug"]) * scale, arrays["y_held_aug"], arrays["src_held_aug"])
    methods = [m for m in CALIBRATION_METHODS if aug is not None or not m.endswith("-augmented")]
    if method not in methods:
        raise ValueError(f"--calibration {method} needs --calibration-variants > 0")
    candidates = {}
    for m in methods:
        loso = leave_one_source_out(m, z, yh, src, aug)
        candidates[m] = {"temperature": round(fit_calibration(m, z, yh, src, aug), 4),
                         "loso_balanced_ece15_mean": loso["mean"]["ece15"],
                         "loso_balanced_ece15_pooled": loso["pooled"]["ece15"],
                         "loso": {s: {"ece15": v["ece15"], "temperature": round(v["temperature"], 4), "n": v["n"]}
                                  for s, v in loso.items() if "n" in v}}
    t = candidates[method]["temperature"]
    cal = {"method": method, "temperature": t,
           "ece15_before": ece(softmax(z), yh), "ece15_after": ece(softmax(z / t), yh),
           "balanced_ece15_before": balanced_ece(softmax(z), yh),
           "balanced_ece15_after": balanced_ece(softmax(z / t), yh),
           "held_out_variants": 0 if aug is None else int(len(aug[1])), "candidates": candidates}
    return t, cal, z


def _train_arrays(train: list[Photo], cfg: PreprocessConfig, aug: PhotoAugment,
                  args: argparse.Namespace) -> dict[str, np.ndarray]:
    t0 = time.time()
    clean = prepare_clean(train, cfg)
    x, idx = prepare_augmented(train, cfg, aug, args.variants, args.seed)
    y = np.array([p.label for p in train])
    print(f"prepared {len(train)} photos x (1 + {args.variants}) in {time.time() - t0:.0f} s", flush=True)
    return {"x": np.concatenate([clean, x]), "y": np.concatenate([y, y[idx]])}


def class_weights(spec: str) -> torch.Tensor:
    """'Pullover=2,Coat=1.5' -> a (10,) weight tensor, 1 elsewhere."""
    w = torch.ones(len(CLASSES))
    for part in filter(None, (s.strip() for s in spec.split(","))):
        name, value = part.rsplit("=", 1)
        w[class_index(name, CLASSES)] = float(value)
    return w


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Eval-mode logits (mirror averaging as the model is built) of normalized (N,28,28) arrays."""
    model.eval()
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).unsqueeze(1)
    return torch.cat([model(t[i:i + batch]) for i in range(0, len(t), batch)]).numpy()


def _train_mode(model: torch.nn.Module, bn_eval: bool) -> None:
    model.train()
    if bn_eval:
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()


def finetune(model: torch.nn.Module, fm: tuple[torch.Tensor, torch.Tensor], photos: tuple[np.ndarray, np.ndarray],
             args: argparse.Namespace, teacher: torch.nn.Module | None = None) -> None:
    """`args.steps` SGD steps on mixed batches (Fashion-MNIST replay + class-sampled photo variants)."""
    if args.steps <= 0:
        return
    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fm_x, fm_y = fm
    ph_x, ph_y = torch.from_numpy(photos[0]), torch.from_numpy(photos[1])
    counts = np.bincount(photos[1], minlength=len(CLASSES)).astype(np.float64)
    class_p = np.where(counts > 0, np.maximum(counts, 1) ** args.balance, 0)
    class_p /= class_p.sum()
    sample_p = (class_p / np.maximum(counts, 1))[photos[1]]
    sample_p /= sample_p.sum()
    cw = class_weights(args.class_weight)
    fm_aug = AugmentConfig(p_any=args.fm_p_any)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1,
                                                anneal_strategy="cos", div_factor=10, final_div_factor=100)
    _train_mode(model, args.bn_eval)
    t0, running = time.time(), 0.0
    for step in range(args.steps):
        i = torch.randint(len(fm_x), (args.fm_batch,), generator=g)
        xf = augment_batch(fm_x[i].unsqueeze(1).float().div_(255), fm_aug, g)
        xf = (xf - data.MEAN) / data.STD
        j = torch.from_numpy(rng.choice(len(ph_y), args.photo_batch, p=sample_p))
        xp = ph_x[j].unsqueeze(1)
        flip = torch.rand(len(j), generator=g) < 0.5  # the cache holds flipped photos too; cheap extra views
        xp = torch.where(flip.view(-1, 1, 1, 1), xp.flip(3), xp)
        out = model(torch.cat([xf, xp]))
        loss_fm = F.cross_entropy(out[:len(i)], fm_y[i], label_smoothing=args.label_smoothing)
        yp = ph_y[j]
        per = F.cross_entropy(out[len(i):], yp, reduction="none", label_smoothing=args.label_smoothing)
        loss_ph = (per * cw[yp]).sum() / cw[yp].sum()
        n = len(i) + len(j)
        loss = (len(i) * loss_fm + args.photo_loss_weight * len(j) * loss_ph) / n
        if teacher is not None and args.distill > 0:
            with torch.no_grad():
                target = F.softmax(teacher.logits(xf), 1)
            loss = loss + args.distill * F.kl_div(F.log_softmax(out[:len(i)], 1), target, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            print(f"step {step + 1}/{args.steps}  loss {running:.4f}  ({time.time() - t0:.0f} s)", flush=True)


def photo_report(y: np.ndarray, pred: np.ndarray, src: np.ndarray) -> dict[str, float]:
    """Overall, per-class and per-source accuracy."""
    rep = {"overall": float((pred == y).mean())}
    per = {name: float((pred[y == c] == c).mean()) for c, name in enumerate(CLASSES) if (y == c).any()}
    rep["macro"] = float(np.mean(list(per.values())))  # class-balanced: what a 40-per-class set measures
    rep.update(per)
    for s in sorted(set(src)):
        rep[f"source {s}"] = float((pred[src == s] == y[src == s]).mean())
    return rep


def main(argv: list[str] | None = None) -> int:
    """Prepare and cache, fine-tune, calibrate on the held-out photos, report, export."""
    args = parse_args(argv)
    started = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.dry_run:
        args.steps, args.variants = min(args.steps, 3), min(args.variants, 2)
        args.calibration_variants = min(args.calibration_variants, 2)
        args.cache_dir = Path(tempfile.mkdtemp(prefix="fb-ft-cache-"))
    out = args.out or (Path(tempfile.mkdtemp(prefix="fb-ft-")) if args.dry_run else Path("runs/finetune"))
    out.mkdir(parents=True, exist_ok=True)
    if args.resume is None:
        from pipeline.settings import load_settings

        args.resume = load_settings().weights_dir / "fmnist" / "model.pt"
    # The preprocessing the resumed model was trained with, and any overrides: a user's fine-tune of the
    # shipped weights prepares its photos exactly as they were prepared for those weights.
    base = json.loads((args.resume.parent / "manifest.json").read_text()).get("preprocess", {})
    cfg = PreprocessConfig.from_dict({**PreprocessConfig().to_dict(), **base, **json.loads(args.preprocess)})
    arrays = photo_arrays(args, cfg)

    ck = torch.load(args.resume, map_location="cpu", weights_only=True)
    manifest = json.loads((args.resume.parent / "manifest.json").read_text())
    arch = ck.get("arch", manifest["arch"]) if isinstance(ck, dict) and "arch" in ck else manifest["arch"]
    model = build_model(arch["name"], arch["args"])  # mirror as in the resumed manifest
    model.load_state_dict(ck.get("state_dict", ck))

    train_x, train_y = data.load_split("train", args.data_dir)
    test_x, test_y = data.load_split("test", args.data_dir)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    teacher = None
    if args.distill > 0:
        teacher = build_model(arch["name"], arch["args"])
        teacher.load_state_dict(start)
        teacher.eval()
    finetune(model, (torch.from_numpy(train_x.copy()), torch.from_numpy(train_y.copy())),
             (arrays["x_train"], arrays["y_train"]), args, teacher)
    if args.wise < 1.0:
        model.load_state_dict({k: (args.wise * v + (1 - args.wise) * start[k]) if v.is_floating_point() else v
                               for k, v in model.state_dict().items()})

    yh, src = arrays["y_held"], arrays["src_held"]
    temperature, cal, z = calibrate(model, arrays, args.calibration)
    held = photo_report(yh, z.argmax(1), src)
    limit = 500 if args.dry_run else None
    fm_pred = logits_of(model, data.to_tensor_input(test_x[:limit])[:, 0]).argmax(1)
    fm_acc = float((fm_pred == test_y[:limit]).mean())
    print(f"held-out photos {held['overall']:.4f} (macro {held['macro']:.4f})  Fashion-MNIST test {fm_acc:.4f}  T={temperature:.3f}  "
          f"({cal['method']})  ECE {cal['ece15_before']:.4f} -> {cal['ece15_after']:.4f}  class-balanced "
          f"{cal['balanced_ece15_before']:.4f} -> {cal['balanced_ece15_after']:.4f}", flush=True)
    for m, c in cal["candidates"].items():
        print(f"  calibration {m}: T={c['temperature']:.3f}  leave-one-source-out balanced ECE15 "
              f"mean {c['loso_balanced_ece15_mean']:.4f} pooled {c['loso_balanced_ece15_pooled']:.4f}", flush=True)
    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in held.items() if not k.startswith("source")), flush=True)
    fold_temperature(model.head, temperature)
    cal["folded_into_head"] = True  # model.pt's logits are already divided by T, in every backend
    resumed = json.loads((args.resume.parent / "manifest.json").read_text())
    info = {"command": "python -m training.finetune_photos " + shlex.join(sys.argv[1:] if argv is None else argv),
            "photo_sets": [{"path": str(args.photos), "train_photos": int(arrays["n_train_photos"]),
                            "held_out_photos": int(len(arrays["y_held"]))}],
            "resumed_from": {"manifest_sha256": hashlib.sha256(
                (args.resume.parent / "manifest.json").read_bytes()).hexdigest(),
                "training": resumed.get("training", {})},
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "held_out": held, "fashion_mnist_test": fm_acc, "calibration": cal,
            "duration_s": round(time.time() - started, 1), "torch": torch.__version__, "seed": args.seed}
    (out / "results.json").write_text(json.dumps(info, indent=2) + "\n")
    np.savez_compressed(out / "held_logits.npz", logits=z, y=yh, source=src, name=arrays["name_held"])
    if args.export:
        from training.export import export_all

        export_all(model.cpu(), arch, out, train_x, (test_x, test_y), info, quick=args.dry_run, preprocess=cfg)
    else:
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.pt")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
