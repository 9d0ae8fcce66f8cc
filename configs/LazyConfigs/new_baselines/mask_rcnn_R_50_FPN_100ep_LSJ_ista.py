# ISTA: each batch is used for 2 consecutive steps, one task per image per step; the budget of the
# Full Task config (so half of its batches).
from .mask_rcnn_R_50_FPN_100ep_LSJ_full import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

sta = dict(POLICY="ista", TASKS_PER_IMAGE=1)
