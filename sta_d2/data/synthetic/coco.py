"""Coloured shapes in COCO's layout (instances with polygons)."""
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from .common import disjoint, jitter, noisy, prepare_root

SHAPE_CATEGORIES = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "rectangle", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
)
_SHAPE_COLOURS = {"circle": (220, 50, 40), "rectangle": (40, 190, 70), "triangle": (50, 80, 230)}


def _shape_polygon(name, cx, cy, r, rng):
    """Vertices [(x, y), ...] of a circle, rectangle or triangle of radius ``r`` around (cx, cy)."""
    if name == "circle":
        angles = np.linspace(0.0, 2 * math.pi, 24, endpoint=False)
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]
    if name == "rectangle":
        short = r * rng.uniform(0.5, 1.0)
        hw, hh = (r, short) if rng.random() < 0.5 else (short, r)
        return [(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)]
    angles = -math.pi / 2 + rng.uniform(-0.4, 0.4) + np.arange(3) * 2 * math.pi / 3
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


def _polygon_area(points):
    """Area of a simple polygon (shoelace formula), as COCO's ``area`` of a polygon object."""
    xs, ys = np.asarray(points, dtype=np.float64).T
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def _shapes_image(image_id, image_size, rng):
    """One shapes image (PIL) and its COCO annotations (``id`` left to the caller)."""
    h, w = image_size
    grey = int(rng.integers(90, 170))
    canvas = Image.new("RGB", (w, h), jitter((grey, grey, grey), rng, 8))
    draw = ImageDraw.Draw(canvas)
    boxes, annotations = [], []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(50):
            r = rng.uniform(0.08, 0.2) * min(h, w)
            cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)
            box = (cx - r, cy - r, cx + r, cy + r)
            if disjoint(box, boxes, 4):
                break
        else:
            continue
        boxes.append(box)
        category = SHAPE_CATEGORIES[rng.integers(len(SHAPE_CATEGORIES))]
        polygon = _shape_polygon(category["name"], cx, cy, r, rng)
        points = [(round(x, 2), round(y, 2)) for x, y in polygon]
        draw.polygon(points, fill=jitter(_SHAPE_COLOURS[category["name"]], rng, 25))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        annotations.append({
            "image_id": image_id,
            "category_id": category["id"],
            "bbox": [round(v, 2) for v in (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))],
            "segmentation": [[c for p in points for c in p]],
            "area": round(_polygon_area(points), 2),
            "iscrowd": 0,
        })
    return noisy(canvas, rng, 6.0), annotations


def generate_coco_shapes(root, num_train, num_val, image_size=(128, 128), seed=0):
    """Write a 3-class shapes dataset in COCO 2017's layout under ``root``.

    ``root/{train2017,val2017}/*.jpg`` and ``root/annotations/instances_{train,val}2017.json``
    with polygon segmentations and category ids 1..3 (COCO ids are 1-based). Each image holds
    1-4 non-overlapping shapes.
    """
    prepare_root(root, ("train2017", "val2017", "annotations"))
    os.makedirs(os.path.join(root, "annotations"))
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        rng = np.random.default_rng([seed, split_index])
        image_dir = os.path.join(root, f"{split}2017")
        os.makedirs(image_dir)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, annos = _shapes_image(image_id, image_size, rng)
            file_name = f"{image_id:012d}.jpg"
            image.save(os.path.join(image_dir, file_name), quality=95)
            images.append({"id": image_id, "file_name": file_name,
                           "height": image_size[0], "width": image_size[1]})
            for anno in annos:
                annotations.append({"id": len(annotations) + 1, **anno})
        dataset = {
            "info": {"description": f"sta_d2 synthetic shapes, {split} split, seed {seed}"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": list(SHAPE_CATEGORIES),
        }
        with open(os.path.join(root, "annotations", f"instances_{split}2017.json"), "w") as f:
            json.dump(dataset, f)
