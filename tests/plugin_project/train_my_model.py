"""A user's own detectron2 project adopting STA, exactly as README.md shows.

    python train_my_model.py ANNOTATIONS_JSON IMAGE_DIR OUTPUT_DIR
"""
import sys

from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data.datasets import register_coco_instances

import sta_d2

annotations, image_dir, output_dir = sys.argv[1:4]
register_coco_instances("my_dataset_train", {}, annotations, image_dir)

cfg = get_cfg()
sta_d2.add_sta_config(cfg)
cfg.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
cfg.MODEL.META_ARCHITECTURE = "STAGeneralizedRCNN"
cfg.MODEL.PROPOSAL_GENERATOR.NAME = "STARPN"
cfg.MODEL.ROI_HEADS.NAME = "STAROIHeads"
cfg.STA.POLICY = "sta"

# The rest is this user's usual small CPU setting.
cfg.merge_from_list([
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96",
    "DATASETS.TRAIN", "('my_dataset_train',)", "DATASETS.TEST", "()",
    "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.001",
    "SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "()", "OUTPUT_DIR", output_dir,
])
sta_d2.validate_sta_config(cfg)  # the config is finished: check sta_d2's keys once

trainer = sta_d2.STATrainer(cfg)
trainer.resume_or_load(resume=False)
trainer.train()
