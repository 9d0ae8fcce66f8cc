"""Small synthetic datasets written in the exact on-disk layouts of COCO and Cityscapes.

Nothing can be downloaded on the machines sta_d2 is developed on, so the loaders, evaluators and
the CPU demo run on generated files that follow the real formats. Objects have distinct colours
and shapes so that a small model learns them in minutes on a CPU.

    python -m sta_d2.data.synthetic coco --root datasets/shapes --num-train 400 --num-val 50
    python -m sta_d2.data.synthetic cityscapes --root datasets/cityscapes
"""
import argparse
import json
import math
import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CATEGORIES = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "rectangle", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
)
_SHAPE_COLOURS = {"circle": (220, 50, 40), "rectangle": (40, 190, 70), "triangle": (50, 80, 230)}

# Real Cityscapes city names: train cities for "train", validation cities for "val".
CITYSCAPES_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau")}
_CITYSCAPES_FRAME = 19  # gtFine annotates frame 19 of each 30-frame snippet
_MARKER = ".sta_d2_synthetic"  # marks a root written here, so regenerating may clear it


def _prepare_root(root, subdirs):
    """Clear ``subdirs`` of a root this module wrote before; refuse to touch anything else."""
    if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(os.path.join(root, _MARKER)):
        raise FileExistsError(
            f"{root} is not empty and was not written by sta_d2.data.synthetic; refusing to "
            "overwrite it (it may hold a real dataset): choose another --root"
        )
    for sub in subdirs:
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    open(os.path.join(root, _MARKER), "w").close()


def _noisy(canvas, rng, sigma):
    """The RGB image of ``canvas`` with Gaussian pixel noise."""
    noise = rng.normal(0.0, sigma, (canvas.height, canvas.width, 3))
    pixels = np.asarray(canvas, dtype=np.float32) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _disjoint(box, boxes, margin):
    """Whether the (x0, y0, x1, y1) ``box`` is more than ``margin`` away from all ``boxes``."""
    return all(box[2] + margin < b[0] or b[2] + margin < box[0] or box[3] + margin < b[1]
               or b[3] + margin < box[1] for b in boxes)


def _jitter(colour, rng, amount):
    """``colour`` with each channel moved by up to ``amount``, so instances vary a little."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


# ---------------------------------------------------------------- COCO layout: shapes


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
    canvas = Image.new("RGB", (w, h), _jitter((grey, grey, grey), rng, 8))
    draw = ImageDraw.Draw(canvas)
    boxes, annotations = [], []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(50):
            r = rng.uniform(0.08, 0.2) * min(h, w)
            cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)
            box = (cx - r, cy - r, cx + r, cy + r)
            if _disjoint(box, boxes, 4):
                break
        else:
            continue
        boxes.append(box)
        category = SHAPE_CATEGORIES[rng.integers(len(SHAPE_CATEGORIES))]
        polygon = _shape_polygon(category["name"], cx, cy, r, rng)
        points = [(round(x, 2), round(y, 2)) for x, y in polygon]
        draw.polygon(points, fill=_jitter(_SHAPE_COLOURS[category["name"]], rng, 25))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        annotations.append({
            "image_id": image_id,
            "category_id": category["id"],
            "bbox": [round(v, 2) for v in (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))],
            "segmentation": [[c for p in points for c in p]],
            "area": round(_polygon_area(points), 2),
            "iscrowd": 0,
        })
    return _noisy(canvas, rng, 6.0), annotations


def generate_coco_shapes(root, num_train, num_val, image_size=(128, 128), seed=0):
    """Write a 3-class shapes dataset in COCO 2017's layout under ``root``.

    ``root/{train2017,val2017}/*.jpg`` and ``root/annotations/instances_{train,val}2017.json``
    with polygon segmentations and category ids 1..3 (COCO ids are 1-based). Each image holds
    1-4 non-overlapping shapes.
    """
    _prepare_root(root, ("train2017", "val2017", "annotations"))
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


# ---------------------------------------------------------------- Cityscapes layout: street scenes


_THING_OUTLINES = {  # (u, v) vertices in the unit box
    "car": [(0, 0.45), (0.2, 0.45), (0.3, 0), (0.75, 0), (0.85, 0.45), (1, 0.5), (1, 1), (0, 1)],
    "truck": [(0, 0), (0.7, 0), (0.7, 0.3), (0.95, 0.3), (1, 0.55), (1, 1), (0, 1)],
    "person": [(0.3, 0), (0.7, 0), (1, 0.3), (0.85, 1), (0.15, 1), (0, 0.3)],
}
# (width, height) as fractions of the image height, for an object at the bottom of the road
_THING_SIZES = {"car": (0.45, 0.26), "truck": (0.5, 0.45), "person": (0.12, 0.4)}


def _place_thing(label, image_size, horizon, ego_top, boxes, rng):
    """Integer polygon of a ``label`` standing on the ground away from ``boxes``, or None."""
    height, width = image_size
    for _attempt in range(50):
        bottom = rng.uniform(horizon + 0.4 * (ego_top - horizon), ego_top - 2)
        scale = (bottom - horizon) / (ego_top - horizon) * rng.uniform(0.9, 1.2)  # near = big
        w, h = (max(4.0, f * scale * height) for f in _THING_SIZES[label])
        if label == "person":  # on a sidewalk
            cx = width * (rng.uniform(0.02, 0.3) if rng.random() < 0.5 else rng.uniform(0.7, 0.98))
        else:
            cx = width * rng.uniform(0.15, 0.85)
        box = (cx - w / 2, bottom - h, cx + w / 2, bottom)
        if box[0] < 0 or box[2] > width - 1 or box[1] < 0:
            continue
        if _disjoint(box, boxes, 2):
            boxes.append(box)
            return [[round(box[0] + u * w), round(box[1] + v * h)]
                    for u, v in _THING_OUTLINES[label]]
    return None


def _street_objects(image_size, rng):
    """Cityscapes ``objects`` (label, polygon) of one street scene, in drawing order."""
    h, w = image_size
    horizon = int(h * rng.uniform(0.35, 0.5))
    ego_top = h - 1 - int(h * 0.06)
    objects = [("sky", [[0, 0], [w - 1, 0], [w - 1, horizon], [0, horizon]])]
    edges = sorted(rng.choice(np.arange(w // 8, w - w // 8), rng.integers(1, 4), replace=False))
    for x0, x1 in zip([0, *edges], [*edges, w - 1]):
        top = int(rng.uniform(0.05, 0.6) * horizon)
        box = [[int(x0), top], [int(x1), top], [int(x1), horizon + 4], [int(x0), horizon + 4]]
        objects.append(("building", box))
    for _ in range(int(rng.integers(0, 3))):
        cx, r = rng.uniform(0, w), rng.uniform(0.05, 0.12) * w
        angles = np.linspace(0, 2 * math.pi, 10, endpoint=False)
        radii = r * rng.uniform(0.7, 1.0, size=10)
        tree = [[int(cx + q * math.cos(a)), int(horizon + 0.6 * q * math.sin(a))]
                for q, a in zip(radii, angles)]
        objects.append(("vegetation", tree))
    objects.append(("sidewalk", [[0, horizon], [w - 1, horizon], [w - 1, h - 1], [0, h - 1]]))
    left, right, bottom_left, bottom_right = (int(w * f) for f in rng.uniform(
        [0.4, 0.53, 0.05, 0.85], [0.47, 0.6, 0.15, 0.95]))
    objects.append(("road", [[left, horizon], [right, horizon], [bottom_right, h - 1],
                             [bottom_left, h - 1]]))
    things = ["car"] * int(rng.integers(1, 4)) + ["person"] * int(rng.integers(0, 3))
    things += ["truck"] * int(rng.random() < 0.3)
    boxes = []
    for label in things:
        polygon = _place_thing(label, image_size, horizon, ego_top, boxes, rng)
        if polygon is not None:
            objects.append((label, polygon))
    objects.append(("ego vehicle", [[0, ego_top], [w - 1, ego_top], [w - 1, h - 1], [0, h - 1]]))
    return objects


def _street_image(objects, image_size, rng):
    """An RGB rendering of ``objects``: each in its Cityscapes colour, things outlined."""
    from cityscapesscripts.helpers.labels import name2label

    canvas = Image.new("RGB", (image_size[1], image_size[0]))
    draw = ImageDraw.Draw(canvas)
    for label, polygon in objects:
        colour = _jitter(name2label[label].color, rng, 20)
        outline = tuple(c // 2 for c in colour) if name2label[label].hasInstances else None
        draw.polygon([tuple(p) for p in polygon], fill=colour, outline=outline)
    return _noisy(canvas, rng, 5.0)


def _write_street_scene(stem, image_dir, gt_dir, image_size, rng):
    """Write one image, its polygons JSON and the label images cityscapesscripts derives from it."""
    from cityscapesscripts.preparation.json2instanceImg import json2instanceImg
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    objects = _street_objects(image_size, rng)
    _street_image(objects, image_size, rng).save(os.path.join(image_dir, f"{stem}_leftImg8bit.png"))
    gt = os.path.join(gt_dir, f"{stem}_gtFine_")
    annotation = {
        "imgHeight": image_size[0],
        "imgWidth": image_size[1],
        "objects": [{"label": label, "polygon": polygon} for label, polygon in objects],
    }
    with open(gt + "polygons.json", "w") as f:
        json.dump(annotation, f)
    json2labelImg(gt + "polygons.json", gt + "labelIds.png", "ids")
    json2labelImg(gt + "polygons.json", gt + "color.png", "color")
    json2instanceImg(gt + "polygons.json", gt + "instanceIds.png", "ids")
    # what cityscapesscripts' createTrainIdLabelImgs (csCreateTrainIdLabelImgs) writes
    json2labelImg(gt + "polygons.json", gt + "labelTrainIds.png", "trainIds")


def generate_cityscapes(root, num_train, num_val, image_size=(128, 256), seed=0):
    """Write street scenes in Cityscapes' gtFine layout under ``root``.

    ``root/leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png`` and, in
    ``root/gtFine/{split}/{city}/``, the ``_gtFine_polygons.json`` annotation plus the
    ``labelIds``, ``color``, ``instanceIds`` and ``labelTrainIds`` images that
    cityscapesscripts' own converters produce from it. Scenes hold sky, building, vegetation,
    sidewalk and road regions, cars, persons and trucks, and the ignored ego vehicle.
    """
    _prepare_root(root, ("leftImg8bit", "gtFine"))
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        rng = np.random.default_rng([seed, split_index])
        cities = CITYSCAPES_CITIES[split]
        for index in range(count):
            city = cities[index % len(cities)]
            image_dir = os.path.join(root, "leftImg8bit", split, city)
            gt_dir = os.path.join(root, "gtFine", split, city)
            os.makedirs(image_dir, exist_ok=True)
            os.makedirs(gt_dir, exist_ok=True)
            stem = f"{city}_{index // len(cities):06d}_{_CITYSCAPES_FRAME:06d}"
            _write_street_scene(stem, image_dir, gt_dir, image_size, rng)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("layout", choices=("coco", "cityscapes"))
    parser.add_argument("--root", required=True, help="dataset directory to (re)write")
    parser.add_argument("--num-train", type=int, default=100)
    parser.add_argument("--num-val", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                        help="default: 128 128 (coco), 128 256 (cityscapes)")
    args = parser.parse_args(argv)
    if min(args.num_train, args.num_val) < 0:
        parser.error("--num-train and --num-val must be >= 0")
    generate = generate_coco_shapes if args.layout == "coco" else generate_cityscapes
    size = {"image_size": tuple(args.image_size)} if args.image_size else {}
    generate(args.root, args.num_train, args.num_val, seed=args.seed, **size)
    print(f"Wrote {args.num_train} train and {args.num_val} val images in the {args.layout} "
          f"layout to {args.root}")


if __name__ == "__main__":
    main()
