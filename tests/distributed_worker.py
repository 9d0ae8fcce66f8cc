"""Train with ``sta_d2.engine.launch`` in N processes and save, per rank, what the distributed
tests compare: final parameters, weighting state and each step's batch (dataset indices) and
allocation.

    python tests/distributed_worker.py CONFIG.yaml OUT_DIR NUM_PROCESSES
"""
import sys

import torch
from detectron2.config import get_cfg
from detectron2.utils import comm

from sta_d2 import STATrainer, add_sta_config
from sta_d2.data import DATASET_INDEX_KEY
from sta_d2.engine import launch, unwrap_model


def main(config_file, out_dir):
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.merge_from_file(config_file)
    trainer = STATrainer(cfg)
    loop = trainer._trainer
    steps = []
    next_step = loop.policy.next_step

    def logged_next_step(next_batch, availability):
        batch, assignment = next_step(next_batch, availability)
        steps.append(([x[DATASET_INDEX_KEY] for x in batch], assignment.mask.clone()))
        return batch, assignment

    loop.policy.next_step = logged_next_step
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = unwrap_model(trainer.model)
    torch.save({"params": {k: v.detach().clone() for k, v in model.named_parameters()},
                "weighting": loop.weighting.state_dict(), "steps": steps},
               f"{out_dir}/rank{comm.get_rank()}.pt")


if __name__ == "__main__":
    config_file, out_dir, processes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    launch(main, processes, dist_url="auto", args=(config_file, out_dir))
