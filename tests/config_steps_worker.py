"""Train every given config one optimizer step, shrunk as ``tools/reproduce.py --smoke`` shrinks
it, on the generated data under ``$DETECTRON2_DATASETS`` (registered when sta_d2 is imported).

    python tests/config_steps_worker.py CONFIGS_DIR OUT_DIR CONFIG [CONFIG ...]
"""
import os
import sys

from sta_d2 import STATrainer, load_config
from sta_d2.reproduction.runs import smoke_overrides


def main(configs_dir, out_dir, configs):
    for config in configs:
        opts = smoke_overrides(config, configs_dir) + [
            "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()", "OUTPUT_DIR", os.path.join(out_dir, config)]
        trainer = STATrainer(load_config(os.path.join(configs_dir, config), opts))
        trainer.resume_or_load(resume=False)
        trainer.train()
        print(f"trained {config}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
