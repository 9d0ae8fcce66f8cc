#!/usr/bin/env python
"""Speed and memory of training under each allocation policy, on generated data.

    python tools/benchmark.py --output output/benchmark
    python tools/benchmark.py --output output/benchmark --iters 20 --repeats 5 --image-size 320

Models (randomly initialised, so with BatchNorm in place of the frozen statistics of pretrained
weights): Mask R-CNN R50-FPN (configs/COCO-InstanceSegmentation) on the
generated shapes data, trained by stock detectron2 (GeneralizedRCNN + SimpleTrainer, reseeded at
every step as sta_d2's loop is, so that stock and ``full``, which is bit-exact to it, follow the
same trajectory) and by sta_d2 under ``full``, ``sta`` and ``ista``; the dense dilated ResNet-50 + ASPP model of
configs/Cityscapes-Dense (semantic segmentation + disparity, 128x256) on generated Cityscapes
data under ``full``, ``sta`` and ``ista``. Each case runs in its own process (so its peak memory
is its own): ``--warmup`` steps, then ``--repeats`` timed runs of ``--iters`` optimizer steps;
the reported time per step is the median over the repeats. Seconds per batch are seconds per
step times the steps a batch takes (ISTA with T tasks and 1 task per image: T); images per
second are the process's batch size over seconds per batch. Peak memory is the process's peak
RSS on the CPU (CUDA's peak allocation on a GPU). Writes ``benchmark.json`` and
``benchmark.md`` (with the ratios of the project's targets) to ``--output``.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [("mask_rcnn", "stock"), ("mask_rcnn", "full"), ("mask_rcnn", "sta"), ("mask_rcnn", "ista"),
         ("dense", "full"), ("dense", "sta"), ("dense", "ista")]
CONFIGS = {"mask_rcnn": "configs/COCO-InstanceSegmentation/Base-STA-mask_rcnn_R_50_FPN_1x.yaml",
           "dense": "configs/Cityscapes-Dense/Base-deeplab_R_50.yaml"}
# (numerator, denominator, target): step-time and memory ratios the project aims for
TARGETS = [
    ("mask_rcnn/full", "mask_rcnn/stock", "sec_per_step", 1.01),
    ("mask_rcnn/sta", "mask_rcnn/full", "sec_per_step", 1.00),
    ("dense/sta", "dense/full", "sec_per_step", 0.90),
    ("mask_rcnn/sta", "mask_rcnn/full", "peak_memory_mb", 1.00),
    ("dense/sta", "dense/full", "peak_memory_mb", 1.00),
]


def case_config(model, policy, image_size, batch_size):
    from sta_d2 import load_config

    cfg = load_config(os.path.join(REPO, CONFIGS[model]))
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.NORM = "BN"  # no pretrained statistics to freeze: FrozenBN would diverge
    cfg.SOLVER.IMS_PER_BATCH = batch_size
    cfg.SOLVER.WARMUP_ITERS = 0  # stock runs without STATrainer's scheduler: the same constant LR
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 0
    if model == "mask_rcnn":
        cfg.DATASETS.TRAIN = ("shapes_train",)
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (image_size,), image_size
        cfg.SOLVER.BASE_LR = 0.001  # randomly initialised: keep the constant LR small
        if policy == "stock":
            cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
            cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
            cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    else:
        cfg.DATASETS.TRAIN = ("cityscapes_depth_seg_train",)
    cfg.STA.POLICY = "full" if policy == "stock" else policy
    return cfg


def measure(case):
    """Time one case in this process (see the module docstring); returns its row."""
    from detectron2.engine import DefaultTrainer, SimpleTrainer
    from detectron2.modeling import build_model
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import EventStorage

    from sta_d2 import STATrainer
    from sta_d2.data.train_loader import mixed_seed

    cfg = case_config(case["model"], case["policy"], case["image_size"], case["batch_size"])
    seed_all_rng(cfg.SEED)  # the same initial weights for every case of a model
    if case["policy"] == "stock":
        model = build_model(cfg)
        trainer = SimpleTrainer(model, STATrainer.build_train_loader(cfg), DefaultTrainer.build_optimizer(cfg, model))
        steps_per_batch = 1
    else:
        trainer = STATrainer(cfg)._trainer
        steps_per_batch = trainer.policy.steps_per_batch
    total = case["warmup"] + case["repeats"] * case["iters"]
    times = []
    with EventStorage(0) as storage, tqdm(total=total, desc=f"{case['model']}/{case['policy']}", leave=False) as bar:
        trainer.storage = storage
        for i in range(total):
            if i >= case["warmup"] and (i - case["warmup"]) % case["iters"] == 0:
                start = time.perf_counter()
            trainer.iter = storage.iter = i
            if case["policy"] == "stock":  # the per-step seeds sta_d2's loop draws, so that both
                seed_all_rng(mixed_seed(cfg.SEED, 0, i))  # follow one trajectory under "full"
            trainer.run_step()
            bar.update()
            if i >= case["warmup"] and (i - case["warmup"] + 1) % case["iters"] == 0:
                times.append((time.perf_counter() - start) / case["iters"])
    step = statistics.median(times)
    if torch.cuda.is_available():
        peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    images = cfg.SOLVER.IMS_PER_BATCH
    return {"case": f"{case['model']}/{case['policy']}", "sec_per_step": step,
            "sec_per_batch": step * steps_per_batch, "images_per_sec": images / (step * steps_per_batch),
            "peak_memory_mb": peak_mb, "steps_per_batch": steps_per_batch, "repeats": times,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


def generate_data(root, image_size):
    from sta_d2.data.synthetic import generate_cityscapes, generate_coco_shapes

    generate_coco_shapes(os.path.join(root, "shapes"), num_train=32, num_val=0, image_size=(image_size, image_size))
    generate_cityscapes(os.path.join(root, "cityscapes"), num_train=32, num_val=0, seed=0)


def markdown(rows, settings):
    by_case = {r["case"]: r for r in rows}
    lines = [f"Settings: {settings}", "",
             "| case | s / step | s / batch | images / s | peak memory (MB) |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['case']} | {r['sec_per_step']:.3f} | {r['sec_per_batch']:.3f} | {r['images_per_sec']:.2f} | "
              f"{r['peak_memory_mb']:.0f} |" for r in rows]
    lines += ["", "| ratio | value | target | met |", "| --- | --- | --- | --- |"]
    for num, den, key, target in TARGETS:
        if num in by_case and den in by_case:
            value = by_case[num][key] / by_case[den][key]
            lines.append(f"| {num} / {den} ({key}) | {value:.3f} | <= {target:.2f} | {'yes' if value <= target else 'no'} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="directory for benchmark.json and benchmark.md")
    parser.add_argument("--iters", type=int, default=10, help="optimizer steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    parser.add_argument("--image-size", type=int, default=256, help="Mask R-CNN input size (shapes data)")
    parser.add_argument("--batch-size", type=int, default=2, help="SOLVER.IMS_PER_BATCH")
    parser.add_argument("--cases", nargs="+", default=[f"{m}/{p}" for m, p in CASES], help="subset of cases")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one case, in a child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    settings = {k: getattr(args, k) for k in ("iters", "warmup", "repeats", "image_size", "batch_size")}
    os.makedirs(args.output, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as data_root:
        generate_data(data_root, args.image_size)
        for name in tqdm(args.cases, desc="cases"):
            model, policy = name.split("/")
            case = {"model": model, "policy": policy, **settings}
            done = subprocess.run([sys.executable, __file__, "--output", args.output, "--measure", json.dumps(case)],
                                  stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "DETECTRON2_DATASETS": data_root})
            if done.returncode:
                sys.exit(f"case {name} failed (exit code {done.returncode}); its log is above")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    with open(os.path.join(args.output, "benchmark.json"), "w") as f:
        json.dump({"settings": settings, "rows": rows}, f, indent=2)
    table = markdown(rows, settings)
    with open(os.path.join(args.output, "benchmark.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
