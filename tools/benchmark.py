#!/usr/bin/env python
"""Step time of sta_d2's training loop and of every weighting method, measured in one process
with the cases interleaved step by step, on generated data.

    python tools/benchmark.py --output output/benchmark
    python tools/benchmark.py --output output/benchmark --models dense --rounds 20

Two tables per model:

- loops: stock detectron2 (its SimpleTrainer on the stock model: GeneralizedRCNN for Mask
  R-CNN; DenseMultiTaskNet without allocation for the dense model) against sta_d2's
  STATrainer loop (AllocationTrainer: allocation, weighting method, metrics) under ``full``,
  ``sta`` and ``ista``. Stock starts from the same weights and draws the same per-step seeds as
  sta_d2's loop, so under ``full`` both train the same trajectory.
- methods: every registered weighting method that applies to the model, each through its own
  STATrainer under ``full``, as a ratio to EqualWeighting (the plain sum of the task losses), and,
  on the dense model, the floor of the exact per-task-gradient methods (:data:`FLOOR`): one
  backward pass per task, the gradients summed, nothing combined.

Models (randomly initialised): the dense demo SegNet (``configs/Demo/Base-nyuv2_segnet.yaml``,
tasks sem_seg, depth and normal, generated NYUv2-13 rooms of 72x96) and Mask R-CNN R50-FPN
(``configs/COCO-InstanceSegmentation``, BatchNorm in place of frozen statistics, generated shapes
of ``--image-size``). Every case is built first (same initial weights, same batches, read from
its loader beforehand so that the times are those of the training step itself); then for
``--warmup`` + ``--rounds`` rounds each case takes one optimizer step, in an order rotated every
round, timed alone. A case's time is the median over the timed rounds; a ratio is the median over
rounds of the two cases' times in the same round, so that load changes on the machine affect both
sides. torch uses ``--threads`` CPU threads (default 1). Writes ``benchmark.json`` and
``benchmark.md`` to ``--output``.
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"dense": "configs/Demo/Base-nyuv2_segnet.yaml",
           "mask_rcnn": "configs/COCO-InstanceSegmentation/Base-STA-mask_rcnn_R_50_FPN_1x.yaml"}
POLICIES = ("full", "sta", "ista")
# (model, numerator, denominator, target): loop ratios the project aims for
LOOP_TARGETS = [("mask_rcnn", "full", "stock", 1.01), ("dense", "full", "stock", 1.01),
                ("mask_rcnn", "sta", "full", 1.00), ("dense", "sta", "full", 0.90)]
# method -> target ratio to EqualWeighting on the dense model
METHOD_TARGETS = {"PCGrad": 1.5, "MGDAUB": 1.25}
# the case that takes the per-task backward passes of PCGrad and MGDA-UB and nothing else
FLOOR = "per-task gradients only"


def overrides(model, case, image_size, batch_size):
    """Config overrides (``KEY value`` pairs) of one case; ``case`` is a policy, "stock" or a method."""
    opts = {"MODEL.DEVICE": "cuda" if torch.cuda.is_available() else "cpu", "MODEL.WEIGHTS": "",
            "SOLVER.IMS_PER_BATCH": batch_size, "SOLVER.WARMUP_ITERS": 0, "DATALOADER.NUM_WORKERS": 0,
            "SEED": 0, "STA.POLICY": case if case in POLICIES else "full"}
    if case not in POLICIES and case not in ("stock", FLOOR):
        opts["STA.WEIGHTING.NAME"] = case
    if model == "dense":
        tasks = ["sem_seg", "depth", "normal"]
        opts.update({"MODEL.DENSE.TASKS": tasks, "DATASETS.TRAIN": ("nyuv2_13_train",), "DATASETS.TEST": ()})
    else:
        tasks = ["det", "mask"]
        opts.update({"MODEL.RESNETS.NORM": "BN",  # no pretrained statistics to freeze: FrozenBN would diverge
                     "DATASETS.TRAIN": ("shapes_train",), "DATASETS.TEST": (), "MODEL.ROI_HEADS.NUM_CLASSES": 3,
                     "INPUT.MIN_SIZE_TRAIN": (image_size,), "INPUT.MAX_SIZE_TRAIN": image_size,
                     "SOLVER.BASE_LR": 0.001})  # randomly initialised: keep the constant LR small
    if case == "StaticWeighting":
        opts["STA.WEIGHTING.STATIC.WEIGHTS"] = [1.0] * len(tasks)
    return [str(x) for kv in opts.items() for x in kv]


class Case:
    """One trainer of the benchmark, with its own event storage and seeding."""

    def __init__(self, model, case, image_size, batch_size, output):
        from detectron2.engine import SimpleTrainer
        from detectron2.modeling import build_model
        from detectron2.utils.env import seed_all_rng
        from detectron2.utils.events import EventStorage

        from sta_d2 import STATrainer, load_config

        self.name, self.stock = case, case == "stock"
        cfg = load_config(os.path.join(REPO, CONFIGS[model]), overrides(model, case, image_size, batch_size)
                          + ["OUTPUT_DIR", os.path.join(output, model, case)])
        if self.stock and model == "mask_rcnn":  # detectron2's own components (sta_d2 configs refuse them)
            cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "GeneralizedRCNN", "MODEL.PROPOSAL_GENERATOR.NAME", "RPN",
                                 "MODEL.ROI_HEADS.NAME", "StandardROIHeads"])
        self.seed = cfg.SEED
        seed_all_rng(cfg.SEED)  # the same initial weights for every case of a model
        if self.stock:
            net = build_model(cfg)
            self.trainer = SimpleTrainer(net, STATrainer.build_train_loader(cfg), STATrainer.build_optimizer(cfg, net))
            self.steps_per_batch = 1
        else:
            self.trainer = STATrainer(cfg)._trainer
            self.steps_per_batch = self.trainer.policy.steps_per_batch
        if case == FLOOR:
            self.trainer.weighting = per_task_gradients(self.trainer.weighting.tasks)
        self.storage = EventStorage(0)
        self.times = []

    def preload(self, batches):
        """Read the case's first ``batches`` batches now, so that timed steps do not load data."""
        self.trainer._data_loader_iter = iter([next(self.trainer._data_loader_iter) for _ in range(batches)])

    def step(self, iteration):
        """One optimizer step; returns its wall time in seconds."""
        from detectron2.utils.env import seed_all_rng

        from sta_d2.data.train_loader import mixed_seed

        self.trainer.iter = self.storage.iter = iteration
        with self.storage:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            if self.stock:  # the per-step seeds of sta_d2's loop, so that both follow one trajectory
                seed_all_rng(mixed_seed(self.seed, 0, iteration))
            self.trainer.run_step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter() - start


def per_task_gradients(tasks):
    """A weighting whose step is the floor of exact per-task-gradient methods such as PCGrad and
    MGDA-UB: each active task's gradients from its own backward pass through its head and the
    shared network (as they take them), summed; no projection, no solver."""
    from sta_d2.weighting import TaskWeighting
    from sta_d2.weighting.gradients import (accumulate_gradient, accumulate_gradients, combine, split_parameters,
                                            task_gradients_with_parameters)

    class PerTaskGradients(TaskWeighting):
        def backward(self, task_losses, step):
            shared, specific = split_parameters(step.model)
            losses = [task_losses[t] for t in self.active_tasks(step)]
            grads, reached, heads = task_gradients_with_parameters(losses, shared, specific)
            accumulate_gradient(shared, grads.sum(0), reached)
            accumulate_gradients(specific, combine(heads))
            return {t: 1.0 for t in self.tasks}

    return PerTaskGradients(tasks)


def interleave(cases, warmup, rounds, label):
    """Run ``warmup`` + ``rounds`` rounds of one step per case (order rotated each round); keeps the
    timed steps in each case's ``times``."""
    from tqdm import tqdm

    for case in cases:
        case.preload(warmup + rounds)
    with tqdm(total=(warmup + rounds) * len(cases), desc=label, leave=False) as bar:
        for r in range(warmup + rounds):
            for k in range(len(cases)):
                case = cases[(r + k) % len(cases)]
                seconds = case.step(r)
                if r >= warmup:
                    case.times.append(seconds)
                bar.update()


def paired_ratio(numerator, denominator):
    """Median over rounds of the ratio of two cases' step times in the same round."""
    return statistics.median(a / b for a, b in zip(numerator.times, denominator.times))


def run_model(model, args):
    from sta_d2.weighting import WEIGHTING_REGISTRY

    settings = (args.image_size, args.batch_size, args.output)
    result = {"loops": [], "methods": []}
    if "loops" in args.tables:
        cases = [Case(model, c, *settings) for c in ("stock",) + POLICIES]
        interleave(cases, args.warmup, args.rounds, f"{model} loops")
        by_name = {c.name: c for c in cases}
        for c in cases:
            step = statistics.median(c.times)
            result["loops"].append({"case": c.name, "sec_per_step": step, "sec_per_batch": step * c.steps_per_batch,
                                    "steps_per_batch": c.steps_per_batch, "times": c.times,
                                    "to_stock": paired_ratio(c, by_name["stock"]),
                                    "to_full": paired_ratio(c, by_name["full"])})
    if "methods" in args.tables:
        names = ["EqualWeighting"] + sorted(n for n, cls in WEIGHTING_REGISTRY if n != "EqualWeighting"
                                            and (model == "dense" or not (cls.double_backward or cls.SIDE_OUTPUTS)))
        if model == "dense":
            names.append(FLOOR)
        cases = [Case(model, n, *settings) for n in names]
        interleave(cases, args.warmup, args.rounds, f"{model} methods")
        for c in cases:
            result["methods"].append({"method": c.name, "sec_per_step": statistics.median(c.times), "times": c.times,
                                      "ratio": paired_ratio(c, cases[0])})
    return result


def generate_data(root, image_size):
    from sta_d2.data.synthetic import generate_coco_shapes, generate_nyuv2_13

    generate_coco_shapes(os.path.join(root, "shapes"), num_train=32, num_val=0, image_size=(image_size, image_size))
    generate_nyuv2_13(os.path.join(root, "nyuv2"), num_train=32, num_val=0)


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"cpu": cpu, "cores": os.cpu_count(), "device": device, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def markdown(report):
    lines = [f"Machine: {report['machine']}", f"Settings: {report['settings']}",
             f"Load average (1 min) at start and end: {report['load'][0]:.2f}, {report['load'][1]:.2f}", ""]
    for model, result in report["models"].items():
        if result["loops"]:
            lines += [f"### {model}: training loop", "", "| case | s / step | s / batch | to stock | to full |",
                      "| --- | --- | --- | --- | --- |"]
            lines += [f"| {r['case']} | {r['sec_per_step']:.4f} | {r['sec_per_batch']:.4f} | {r['to_stock']:.3f} | "
                      f"{r['to_full']:.3f} |" for r in result["loops"]]
            lines.append("")
        if result["methods"]:
            lines += [f"### {model}: weighting methods under `full`", "", "| method | s / step | to EqualWeighting |",
                      "| --- | --- | --- |"]
            lines += [f"| {r['method']} | {r['sec_per_step']:.4f} | {r['ratio']:.3f} |" for r in result["methods"]]
            lines.append("")
    lines += ["### Targets", "", "| ratio | value | target | met |", "| --- | --- | --- | --- |"]
    for model, num, den, target in LOOP_TARGETS:
        rows = {r["case"]: r for r in report["models"].get(model, {}).get("loops", [])}
        if num in rows:
            value = rows[num][f"to_{den}"]
            lines.append(f"| {model} {num} / {den} | {value:.3f} | <= {target:.2f} | {'yes' if value <= target else 'no'} |")
    for r in report["models"].get("dense", {}).get("methods", []):
        if r["method"] in METHOD_TARGETS:
            target = METHOD_TARGETS[r["method"]]
            lines.append(f"| dense {r['method']} / EqualWeighting | {r['ratio']:.3f} | <= {target:.2f} | "
                         f"{'yes' if r['ratio'] <= target else 'no'} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="directory for benchmark.json and benchmark.md")
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tables", nargs="+", default=["loops", "methods"], choices=["loops", "methods"])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (one step of every case each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--image-size", type=int, default=256, help="Mask R-CNN input size (shapes data)")
    parser.add_argument("--batch-size", type=int, default=2, help="SOLVER.IMS_PER_BATCH")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.output, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("rounds", "warmup", "threads", "image_size", "batch_size", "tables")}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as data_root:
        os.environ["DETECTRON2_DATASETS"] = data_root  # read when sta_d2 registers its datasets
        generate_data(data_root, args.image_size)
        models = {model: run_model(model, args) for model in args.models}
    load.append(os.getloadavg()[0])
    report = {"machine": machine(), "settings": settings, "load": load, "models": models}
    with open(os.path.join(args.output, "benchmark.json"), "w") as f:
        json.dump(report, f, indent=2)
    table = markdown(report)
    with open(os.path.join(args.output, "benchmark.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
