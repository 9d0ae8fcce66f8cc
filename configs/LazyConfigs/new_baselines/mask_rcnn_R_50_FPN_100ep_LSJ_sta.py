# STA: one random task (det or mask) per image and step; the budget of the Full Task config.
from .mask_rcnn_R_50_FPN_100ep_LSJ_full import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

sta = dict(POLICY="sta", TASKS_PER_IMAGE=1)
