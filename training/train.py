"""Train the Fashion-MNIST classifier and export every backend; reads like pytorch/examples mnist/main.py.

    python -m training.train --epochs 30 --finetune-epochs 6 --out weights   # train and fine-tune, then export
    python -m training.train --resume weights/model.pt --finetune-epochs 8   # another fine-tuning phase
    python -m training.train --dry-run                                       # one batch, then a quick export

`make train` runs the three phases that made the shipped weights (weights/manifest.json, `training.phases`).
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.inference.model import ARCH_NAME, DEFAULT_ARGS, build_model
from training import data, report
from training.augment import AugmentConfig, augment_batch


def _batches(n: int, batch_size: int, g: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=g) if g is not None else torch.arange(n)
    return list(order.split(batch_size))


def _inputs(x01: torch.Tensor) -> torch.Tensor:
    return ((x01 - data.MEAN) / data.STD).contiguous(memory_format=torch.channels_last)


def train(args: argparse.Namespace, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
          optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
          epoch: int, g: torch.Generator, aug: AugmentConfig | None) -> float:
    """One epoch over `images` (uint8 (N,28,28)) with augmentation `aug`; returns the mean training loss."""
    model.train()
    batches = _batches(len(images), args.batch_size, g)
    total, seen = 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=args.quiet, mininterval=2.0)
    for idx in bar:
        x = images[idx].unsqueeze(1).float().div_(255)
        if aug is not None:
            x = augment_batch(x, aug, g)
        y = labels[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(_inputs(x)), y, label_smoothing=args.label_smoothing)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.4f}")
        if args.dry_run:
            break
    return total / max(seen, 1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000, limit: int | None = None) -> tuple[float, float, np.ndarray]:
    """Return (mean loss, accuracy, predicted labels) on un-augmented images."""
    model.eval()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    preds, loss = [], 0.0
    for idx in _batches(len(images), batch_size, None):
        logits = model(_inputs(images[idx].unsqueeze(1).float() / 255))
        loss += F.cross_entropy(logits, labels[idx], reduction="sum").item()
        preds.append(logits.argmax(1))
    pred = torch.cat(preds).numpy()
    return loss / len(images), float((pred == labels.numpy()).mean()), pred


def _hardware() -> str:
    """CPU model, cores and threads used (and the GPU, if any), for the manifest."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{gpu}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train the fashion-batch CNN on Fashion-MNIST and export it.")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--channels", type=int, nargs=3, default=DEFAULT_ARGS["channels"], metavar="C",
                   help="widths of the three convolution stages")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True,
                   help="average each image's logits with its mirror image's at inference (validation included)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--finetune-epochs", type=int, default=6,
                   help="then this many epochs with lighter augmentation and a small cosine-decayed LR")
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--finetune-p-any", type=float, default=0.3, help="share of augmented samples when fine-tuning")
    p.add_argument("--resume", type=Path, default=None,
                   help="start the fine-tuning from this checkpoint.pt / model.pt instead of training from scratch")
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--data-dir", type=Path, default=None, help="directory with the IDX .gz files")
    p.add_argument("--download", action="store_true", help="let torchvision download Fashion-MNIST if missing")
    p.add_argument("--out", type=Path, default=None, help="where weights and reports go (default weights/; "
                   "a fresh temp dir with --dry-run)")
    p.add_argument("--no-export", dest="export", action="store_false")
    p.add_argument("--dry-run", action="store_true", help="one batch, then a quick export to a temp dir")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, keep the best model by validation accuracy, report, export."""
    args = parse_args(argv)
    started = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)

    train_x, train_y = data.load_split("train", args.data_dir, args.download)
    test_x, test_y = data.load_split("test", args.data_dir, args.download)
    tr, va = data.split_train_val(len(train_x), args.val_size, args.seed)
    xt, yt = torch.from_numpy(train_x[tr].copy()), torch.from_numpy(train_y[tr].copy())
    xv, yv = torch.from_numpy(train_x[va].copy()), torch.from_numpy(train_y[va].copy())
    xs, ys = torch.from_numpy(test_x.copy()), torch.from_numpy(test_y.copy())

    arch = {"name": ARCH_NAME, "args": {**DEFAULT_ARGS, "channels": list(args.channels)}}
    ck = torch.load(args.resume, map_location="cpu", weights_only=True) if args.resume is not None else None
    if ck is not None and "arch" in ck:
        arch = ck["arch"]  # a checkpoint knows its own architecture
    arch = {**arch, "args": {**arch["args"], "mirror": args.mirror}}  # inference only: any weights take either
    model = build_model(arch["name"], arch["args"]).to(memory_format=torch.channels_last)
    if ck is not None:
        model.load_state_dict(ck.get("state_dict", ck))
    out = args.out or (Path(tempfile.mkdtemp(prefix="fb-dry-run-")) if args.dry_run else Path("weights"))
    out.mkdir(parents=True, exist_ok=True)
    limit = 1000 if args.dry_run else None
    per_epoch = 1 if args.dry_run else len(_batches(len(xt), args.batch_size, None))
    history: list[dict[str, float]] = []
    best = {"acc": -1.0, "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    if args.resume is not None:
        best["acc"] = evaluate(model, xv, yv, limit=limit)[1]  # the resumed model is the one to beat

    def run_phase(epochs: int, optimizer: torch.optim.Optimizer, scheduler, aug: AugmentConfig | None,
                  g: torch.Generator) -> None:
        for _ in range(epochs):
            epoch = len(history) + 1
            t0 = time.time()
            train_loss = train(args, model, xt, yt, optimizer, scheduler, epoch, g, aug)
            val_loss, val_acc, _ = evaluate(model, xv, yv, limit=limit)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc})
            print(f"epoch {epoch:3d}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                  f"val acc {val_acc:.4f}  ({time.time() - t0:.0f} s)", flush=True)
            if val_acc > best["acc"]:
                best["acc"], best["state"] = val_acc, {k: v.detach().clone() for k, v in model.state_dict().items()}
                torch.save({"arch": arch, "state_dict": best["state"], "epoch": epoch, "val_acc": val_acc},
                           out / "checkpoint.pt")

    def sgd(lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                               weight_decay=args.weight_decay)

    main_epochs = 0 if args.resume is not None else (1 if args.dry_run else args.epochs)
    if main_epochs:
        opt = sgd(args.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=main_epochs * per_epoch,
                                                    pct_start=0.2)
        run_phase(main_epochs, opt, sched, AugmentConfig() if args.augment else None, g)
    ft_epochs = min(args.finetune_epochs, 1) if args.dry_run else args.finetune_epochs
    if ft_epochs:
        # Fine-tuning starts from the best model and its own seeds, so resuming from a checkpoint gives
        # the same result as one uninterrupted run.
        model.load_state_dict(best["state"])
        torch.manual_seed(args.seed + 1)
        opt = sgd(args.finetune_lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=ft_epochs * per_epoch)
        aug = AugmentConfig(p_any=args.finetune_p_any) if args.augment else None
        run_phase(ft_epochs, opt, sched, aug, torch.Generator().manual_seed(args.seed + 1))
    best_acc, best_state = best["acc"], best["state"]
    model.load_state_dict(best_state)
    test_loss, test_acc, test_pred = evaluate(model, xs, ys, limit=limit)
    print(f"best val acc {best_acc:.4f}; test loss {test_loss:.4f}  test acc {test_acc:.4f}", flush=True)
    classes = report.CLASSES
    report.write_curves(history, out / "training_curves.png")
    labels_used = test_y[: len(test_pred)]
    report.write_confusion(labels_used, test_pred, classes, out / "confusion_matrix.png",
                           title=f"Fashion-MNIST test (eager), acc {test_acc:.4f}")
    report.write_per_class(labels_used, test_pred, classes, out / "per_class_accuracy.md")

    if args.export:
        from training.export import export_all

        training_info = {
            "epochs": main_epochs, "seed": args.seed,
            "duration_s": round(time.time() - started, 1),
            "hardware": _hardware(),
            "command": "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else argv),
            "best_epoch": int(max(history, key=lambda h: h["val_acc"])["epoch"]) if history else 0,
            "val_acc": best_acc, "finetune_epochs": ft_epochs, "finetune_p_any": args.finetune_p_any,
            "resumed_from": str(args.resume) if args.resume else None,
            "batch_size": args.batch_size, "lr": args.lr, "augment": args.augment, "torch": torch.__version__,
        }
        export_all(model.cpu(), arch, out, train_x[tr], (test_x, test_y), training_info, quick=args.dry_run)
        # model.pt + manifest.json now hold the best model; the crash-safety checkpoint is redundant.
        (out / "checkpoint.pt").unlink(missing_ok=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
