"""The STA/ISTA paper's Tables 1-7 as data, typed from the paper, with the config of each row.

Li, Guo, Li, Zhang and Zuo, "On Steering Multi-Annotations per Sample for Multi-Task Learning".
Values are as printed (units of the paper: RMSE in metres, L1 in pixels, mIoU and AP in %), under
sta_d2's metric names ("task/metric", as the evaluators report them). Every table section has the
single-task (or baseline) values its delta_m compares with; ``delta_m`` is the value printed.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

NYU_METRICS = ("depth/rmse", "sem_seg/mIoU")
CITYSCAPES_METRICS = ("disparity/abs_err", "sem_seg/mIoU")
MASK_RCNN_METRICS = ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50")


@dataclass(frozen=True)
class PaperRow:
    """One row: the method as printed, its metric values, its printed delta_m (%), and the sta_d2
    config (relative to ``configs/``) that trains it."""

    method: str
    values: Tuple[float, ...]
    delta_m: float
    config: str


@dataclass(frozen=True)
class PaperSection:
    """The rows of one table that share a dataset and a baseline."""

    dataset: str  # as the paper names it
    metrics: Tuple[str, ...]
    baseline: Tuple[float, ...]
    baseline_configs: Tuple[str, ...]  # the single-task (or FT baseline) runs that give them
    rows: Tuple[PaperRow, ...]
    note: str = ""
    #: False where the printed delta_m follows none of the conventions we know
    printed_delta_m_fits: bool = True

    def row_values(self, row: PaperRow) -> Dict[str, Dict[str, float]]:
        """A row's values as ``{task: {metric: value}}``, the form of evaluation results."""
        return _nested(self.metrics, row.values)

    def baselines(self) -> Dict[str, Dict[str, float]]:
        return _nested(self.metrics, self.baseline)


@dataclass(frozen=True)
class PaperTable:
    number: int
    caption: str
    sections: Tuple[PaperSection, ...] = field(default_factory=tuple)


def _nested(names, values):
    out: Dict[str, Dict[str, float]] = {}
    for name, value in zip(names, values):
        task, _, metric = name.partition("/")
        out.setdefault(task, {})[metric] = value
    return out


def _rows(directory, *rows):
    return tuple(PaperRow(method, values, delta_m, f"{directory}/{config}.yaml")
                 for method, config, values, delta_m in rows)


NYU13, NYU40, CITY, CITY_RCNN, COCO = (
    "NYUv2-13", "NYUv2-40", "Cityscapes-Dense", "Cityscapes", "COCO-InstanceSegmentation")
NYU13_SINGLE = (f"{NYU13}/segnet_depth_single.yaml", f"{NYU13}/segnet_sem_seg_single.yaml")
NYU40_SINGLE = (f"{NYU40}/deeplab_R_50_depth_single.yaml", f"{NYU40}/deeplab_R_50_sem_seg_single.yaml")
CITY_SINGLE = (f"{CITY}/deeplab_R_50_disparity_single.yaml", f"{CITY}/deeplab_R_50_sem_seg_single.yaml")

NYU13_FT = ("Full Task (FT)", "segnet_full", (0.745, 53.22), -0.74)
NYU13_STA = ("STA", "segnet_sta", (0.735, 54.80), 0.05)
NYU13_ISTA = ("ISTA", "segnet_ista", (0.737, 55.03), 0.16)
CITY_FT = ("Full Task (FT)", "deeplab_R_50_full", (3.831, 64.79), 0.51)
CITY_PCGRAD = ("PCGrad", "deeplab_R_50_pcgrad", (3.846, 64.28), 0.25)
CITY_STA = ("STA", "deeplab_R_50_sta", (3.752, 66.04), 1.17)
CITY_ISTA = ("ISTA", "deeplab_R_50_ista", (3.720, 66.26), 1.30)

TABLES: Dict[int, PaperTable] = {t.number: t for t in (
    PaperTable(1, "NYUv2-13, SegNet: depth RMSE and 13-class mIoU", (PaperSection(
        "NYUv2-13", NYU_METRICS, (0.747, 54.71), NYU13_SINGLE, _rows(
            NYU13,
            NYU13_FT,
            ("Uncertainty", "segnet_uw", (0.752, 54.12), -0.30),
            ("GradNorm", "segnet_gradnorm", (0.753, 54.09), -0.31),
            ("DWA", "segnet_dwa", (0.745, 53.80), -0.45),
            ("MGDA", "segnet_mgda", (0.751, 54.04), -0.33),
            ("CosReg", "segnet_cosreg", (0.749, 54.00), -0.35),
            ("PCGrad", "segnet_pcgrad", (0.744, 54.66), -0.02),
            ("PCGrad+Uncertainty", "segnet_pcgrad_uw", (0.749, 55.20), 0.24),
            NYU13_STA,
            ("STA+Uncertainty", "segnet_sta_uw", (0.741, 55.12), 0.21),
            NYU13_ISTA,
            ("ISTA+Uncertainty", "segnet_ista_uw", (0.734, 56.03), 0.66),
        )),)),
    PaperTable(2, "NYUv2-40, ResNet-50 with DeepLab-like heads: depth RMSE and 40-class mIoU", (PaperSection(
        "NYUv2-40", NYU_METRICS, (0.585, 43.9), NYU40_SINGLE, _rows(
            NYU40,
            ("Full Task (FT)", "deeplab_R_50_full", (0.587, 44.4), 0.25),
            ("Uncertainty", "deeplab_R_50_uw", (0.590, 44.0), 0.05),
            ("GradNorm", "deeplab_R_50_gradnorm", (0.581, 44.2), 0.15),
            ("DWA", "deeplab_R_50_dwa", (0.591, 44.1), 0.09),
            ("MGDA", "deeplab_R_50_mgda", (0.576, 43.2), -0.35),
            ("STA", "deeplab_R_50_sta", (0.583, 45.0), 0.55),
            ("STA+Uncertainty", "deeplab_R_50_sta_uw", (0.579, 44.8), 0.45),
            ("ISTA", "deeplab_R_50_ista", (0.584, 45.7), 0.90),
            ("ISTA+Uncertainty", "deeplab_R_50_ista_uw", (0.578, 45.3), 0.70),
        ), note="the paper marks the rows of the prior methods as taken from its reference [38] (MTI-Net)"),)),
    PaperTable(3, "Cityscapes: disparity L1 and 19-class mIoU", (PaperSection(
        "Cityscapes", CITYSCAPES_METRICS, (3.903, 63.84), CITY_SINGLE, _rows(
            CITY,
            CITY_FT,
            ("Uncertainty", "deeplab_R_50_uw", (3.861, 66.15), 1.18),
            ("GradNorm", "deeplab_R_50_gradnorm", (3.718, 63.54), -0.06),
            CITY_PCGRAD,
            ("DWA", "deeplab_R_50_dwa", (3.842, 64.14), 0.18),
            ("MGDA", "deeplab_R_50_mgda", (5.252, 65.09), -0.05),
            CITY_STA,
            ("STA+Uncertainty", "deeplab_R_50_sta_uw", (3.821, 68.33), 2.29),
            CITY_ISTA,
            ("ISTA+Uncertainty", "deeplab_R_50_ista_uw", (3.790, 68.84), 2.56),
        )),)),
    PaperTable(4, "Mask R-CNN (detectron2): instance segmentation and detection AP, AP50", (
        PaperSection(
            "Cityscapes", MASK_RCNN_METRICS, (36.73, 62.56, 41.67, 65.06),
            (f"{CITY_RCNN}/mask_rcnn_R_50_FPN_full.yaml",), _rows(
                CITY_RCNN,
                ("STA", "mask_rcnn_R_50_FPN_sta", (37.93, 64.99, 42.50, 67.33), 4.43),
                ("ISTA", "mask_rcnn_R_50_FPN_ista", (37.85, 65.86, 42.78, 68.02), 4.87),
            ),
            note="the printed delta_m of these rows follows none of the conventions we know",
            printed_delta_m_fits=False),
        PaperSection(
            "COCO", MASK_RCNN_METRICS, (38.624, 59.428, 35.206, 56.559),
            (f"{COCO}/mask_rcnn_R_50_FPN_1x_full.yaml",), _rows(
                COCO,
                ("STA", "mask_rcnn_R_50_FPN_1x_sta", (39.334, 60.312, 35.763, 57.291), 0.72),
                ("ISTA", "mask_rcnn_R_50_FPN_1x_ista", (38.994, 59.699, 35.497, 56.729), 0.28),
            ),
            note="typed under the paper's column headers; the baseline's 'Instance Segmentation' "
                 "values (38.6 / 59.4) are detectron2's model-zoo box AP of this model and its "
                 "'Detection' values (35.2 / 56.6) its mask AP, so the headers look swapped here"),
    )),
    PaperTable(5, "FT+: Full Task trained for as many steps as STA and ISTA", (
        PaperSection("NYUv2-13", NYU_METRICS, (0.747, 54.71), NYU13_SINGLE, _rows(
            NYU13, NYU13_FT, ("FT+", "segnet_full_plus", (0.748, 53.69), -0.51), NYU13_STA, NYU13_ISTA)),
        PaperSection("Cityscapes", CITYSCAPES_METRICS, (3.903, 63.84), CITY_SINGLE, _rows(
            CITY, CITY_FT, ("FT+", "deeplab_R_50_full_plus", (3.757, 65.29), 0.80), CITY_STA, CITY_ISTA)),
    )),
    PaperTable(6, "Cityscapes: STA and ISTA combined with PCGrad", (PaperSection(
        "Cityscapes", CITYSCAPES_METRICS, (3.903, 63.84), CITY_SINGLE, _rows(
            CITY, CITY_PCGRAD, CITY_STA, CITY_ISTA,
            ("STA+PCGrad", "deeplab_R_50_sta_pcgrad", (3.781, 65.43), 0.86),
            ("ISTA+PCGrad", "deeplab_R_50_ista_pcgrad", (3.772, 65.52), 0.90),
        )),)),
    PaperTable(7, "NYUv2-13: STA-Gap, from ISTA (gap 1) to STA", (PaperSection(
        "NYUv2-13", NYU_METRICS, (0.747, 54.71), NYU13_SINGLE, _rows(
            NYU13,
            ("ISTA (Gap=1)", "segnet_ista", (0.737, 55.03), 0.16),
            ("STA-Gap=2", "segnet_gap2", (0.738, 54.84), 0.07),
            ("STA-Gap=4", "segnet_gap4", (0.736, 54.76), 0.03),
            ("STA-Gap=8", "segnet_gap8", (0.736, 54.66), -0.01),
            ("STA-Gap=16", "segnet_gap16", (0.737, 54.77), 0.04),
            NYU13_STA,
        )),)),
)}
