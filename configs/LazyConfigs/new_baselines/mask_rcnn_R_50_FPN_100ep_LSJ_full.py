# Full Task (det and mask on every image) for detectron2's model-zoo LazyConfig
# new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py: its model, made allocating, and its data, optimizer,
# schedule (184,375 steps) and training settings (mixed precision included).
from detectron2 import model_zoo

from sta_d2.lazy import allocating_model

_base = model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
model = allocating_model(_base.model)
dataloader, optimizer, lr_multiplier, train = _base.dataloader, _base.optimizer, _base.lr_multiplier, _base.train
sta = dict(POLICY="full")
