"""Small synthetic datasets written in the exact on-disk layouts of COCO, Cityscapes and NYUv2.

Nothing can be downloaded on the machines sta_d2 is developed on, so the loaders, evaluators and
the CPU demos run on generated files that follow the real formats. Objects have distinct colours
and shapes, and dense scenes are a few planar surfaces whose class goes with their colour and
whose depth and normals follow one camera, so that a small model learns them in minutes on a CPU.

    python -m sta_d2.data.synthetic coco --root datasets/shapes --num-train 400 --num-val 50
    python -m sta_d2.data.synthetic cityscapes --root datasets/cityscapes
    python -m sta_d2.data.synthetic cityscapes_npy --root datasets/cityscapes_npy
    python -m sta_d2.data.synthetic nyuv2_13 --root datasets/nyuv2        # mtan's 13-class .npy
    python -m sta_d2.data.synthetic nyud_mt --root datasets/NYUD_MT       # NYUD-MT, 40 classes
    python -m sta_d2.data.synthetic nyuv2_mat --root raw_nyuv2            # the official .mat files
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
    """Cityscapes ``objects`` (label, polygon) of one street scene, in drawing order, and the
    row of its horizon."""
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
    return objects, horizon


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


def _street_camera(image_size, horizon, rng):
    """A Cityscapes ``*_camera.json`` dict for an image of ``image_size``: the real camera's
    intrinsics scaled to it, pitch 0 (so the horizon is at row v0) and a height ``z`` above the
    ground."""
    h, w = image_size
    return {
        "extrinsic": {"baseline": 0.209313, "pitch": 0.0, "roll": 0.0, "x": 1.7, "y": 0.1,
                      "yaw": 0.0, "z": round(float(rng.uniform(1.1, 1.3)), 3)},
        "intrinsic": {"fx": 2262.52 * w / 2048, "fy": 2265.30 * h / 1024, "u0": 1096.98 * w / 2048,
                      "v0": float(horizon)},
    }


def _street_disparity(objects, image_size, camera, rng):
    """Disparity (pixels, 0 = invalid) of a street scene: the ground (road, sidewalk) is a plane
    ``camera["extrinsic"]["z"]`` below the camera, things stand on it, buildings and vegetation
    are walls at random distances, and the sky, the ego vehicle and a few holes are invalid."""
    h, w = image_size
    index = Image.new("I", (w, h), 0)
    draw = ImageDraw.Draw(index)
    for i, (_, polygon) in enumerate(objects, 1):
        draw.polygon([tuple(p) for p in polygon], fill=i)
    index = np.asarray(index)
    fx, fy, v0 = (camera["intrinsic"][k] for k in ("fx", "fy", "v0"))
    baseline, height = camera["extrinsic"]["baseline"], camera["extrinsic"]["z"]
    rows = np.arange(h, dtype=np.float64)[:, None] + 0.5
    ground = np.broadcast_to(np.maximum(rows - v0, 0) * baseline * fx / (fy * height), (h, w))
    disparity = np.zeros((h, w))
    for i, (label, polygon) in enumerate(objects, 1):
        mask = index == i
        if label in ("road", "sidewalk"):
            disparity[mask] = ground[mask]
        elif label in ("building", "vegetation"):
            disparity[mask] = baseline * fx / rng.uniform(10, 80)
        elif label not in ("sky", "ego vehicle"):  # a thing, as far as the ground at its foot
            disparity[mask] = ground[min(max(p[1] for p in polygon), h - 1), 0]
    for _ in range(int(rng.integers(1, 4))):  # stereo matching failures
        y, x = rng.integers(0, h - h // 16), rng.integers(0, w - w // 16)
        disparity[y : y + h // 16 + 1, x : x + w // 16 + 1] = 0
    return disparity


def _disparity_png(disparity):
    """Cityscapes' 16-bit encoding p = 256 d + 1 of a disparity map (0 = invalid stays 0)."""
    return np.where(disparity > 0, np.round(disparity * 256) + 1, 0).astype(np.uint16)


def _write_street_scene(stem, dirs, image_size, rng, depth_rng):
    """Write one image, its polygons JSON, the label images cityscapesscripts derives from it,
    its disparity PNG and camera JSON; ``dirs`` maps leftImg8bit, gtFine, disparity and camera
    to this image's city directories."""
    from cityscapesscripts.preparation.json2instanceImg import json2instanceImg
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    objects, horizon = _street_objects(image_size, rng)
    image = _street_image(objects, image_size, rng)
    image.save(os.path.join(dirs["leftImg8bit"], f"{stem}_leftImg8bit.png"))
    gt = os.path.join(dirs["gtFine"], f"{stem}_gtFine_")
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
    camera = _street_camera(image_size, horizon, depth_rng)
    with open(os.path.join(dirs["camera"], f"{stem}_camera.json"), "w") as f:
        json.dump(camera, f, indent=4)
    disparity = _street_disparity(objects, image_size, camera, depth_rng)
    Image.fromarray(_disparity_png(disparity)).save(
        os.path.join(dirs["disparity"], f"{stem}_disparity.png"))


def generate_cityscapes(root, num_train, num_val, image_size=(128, 256), seed=0):
    """Write street scenes in Cityscapes' gtFine, disparity and camera layout under ``root``.

    ``root/leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png`` and, in
    ``root/gtFine/{split}/{city}/``, the ``_gtFine_polygons.json`` annotation plus the
    ``labelIds``, ``color``, ``instanceIds`` and ``labelTrainIds`` images that
    cityscapesscripts' own converters produce from it; ``root/disparity/...`` 16-bit
    ``*_disparity.png`` (p = 256 d + 1, 0 = invalid) and ``root/camera/...`` ``*_camera.json``.
    Scenes hold sky, building, vegetation, sidewalk and road regions, cars, persons and trucks,
    and the ignored ego vehicle; disparity follows a flat ground seen by the camera of the JSON.
    """
    kinds = ("leftImg8bit", "gtFine", "disparity", "camera")
    _prepare_root(root, kinds)
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        rng = np.random.default_rng([seed, split_index])
        depth_rng = np.random.default_rng([seed, split_index, 1])  # leaves rng's images as before
        cities = CITYSCAPES_CITIES[split]
        for index in range(count):
            city = cities[index % len(cities)]
            dirs = {kind: os.path.join(root, kind, split, city) for kind in kinds}
            for path in dirs.values():
                os.makedirs(path, exist_ok=True)
            stem = f"{city}_{index // len(cities):06d}_{_CITYSCAPES_FRAME:06d}"
            _write_street_scene(stem, dirs, image_size, rng, depth_rng)


def _street_train_ids(objects, image_size):
    """The train ids (-1 = ignore) of a street scene, drawn as cityscapesscripts draws them."""
    from cityscapesscripts.helpers.labels import name2label

    canvas = Image.new("I", (image_size[1], image_size[0]), -1)
    draw = ImageDraw.Draw(canvas)
    for label, polygon in objects:
        train_id = name2label[label].trainId
        draw.polygon([tuple(p) for p in polygon], fill=train_id if 0 <= train_id < 19 else -1)
    return np.asarray(canvas, dtype=np.int64)


def generate_cityscapes_npy(root, num_train, num_val, image_size=(64, 128), seed=0):
    """Write street scenes in mtan's preprocessed Cityscapes layout under ``root``.

    ``root/{train,val}/image/{i}.npy`` float32 (H, W, 3) in [0, 1], ``label_19/{i}.npy``
    float32 (H, W) train ids 0..18 with -1 = ignore, and ``depth/{i}.npy`` float32 (H, W, 1):
    the disparity PNG value of the full 2048-pixel-wide image divided by 65536 (0 = invalid),
    the quantity mtan's files appear to hold (see datasets/README.md).
    """
    _prepare_root(root, ("train", "val"))
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        rng = np.random.default_rng([seed, split_index])
        depth_rng = np.random.default_rng([seed, split_index, 1])
        for sub in ("image", "label_19", "depth"):
            os.makedirs(os.path.join(root, split, sub))
        for i in range(count):
            objects, horizon = _street_objects(image_size, rng)
            image = np.asarray(_street_image(objects, image_size, rng), dtype=np.float32) / 255
            camera = _street_camera(image_size, horizon, depth_rng)
            disparity = _street_disparity(objects, image_size, camera, depth_rng)
            full_res = _disparity_png(disparity * 2048 / image_size[1]).astype(np.float32)
            arrays = {"image": image, "depth": (full_res / 65536)[..., None],
                      "label_19": _street_train_ids(objects, image_size).astype(np.float32)}
            for sub, array in arrays.items():
                np.save(os.path.join(root, split, sub, f"{i}.npy"), array)


# ---------------------------------------------------------------- NYUv2 layouts: rooms

# NYUv2's Kinect RGB camera (fx, fy, cx, cy) for 640x480 images, from the NYU toolbox.
NYU_INTRINSICS = (518.857901, 519.469611, 325.582449, 253.736166)
# class13Mapping.mat: Gupta's 40 classes (1..40) -> the 13 classes (1..13); index 0 unlabelled.
NYU_40_TO_13 = (0, 12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5, 7, 3, 2, 6,
                11, 7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, 7, 6, 7)
# 40-class ids (1-based) and RGB colours of what the rooms hold
_ROOM_COLOURS = {1: (205, 190, 160), 2: (120, 80, 45), 22: (235, 235, 230), 9: (150, 200, 235),
                 11: (150, 40, 50), 4: (120, 60, 150), 5: (230, 140, 30), 6: (40, 140, 70),
                 7: (170, 120, 70)}
# furniture: 40-class id -> (width, height, depth) in metres
_FURNITURE = {4: (1.6, 0.5, 2.0), 5: (0.5, 0.9, 0.5), 6: (1.8, 0.8, 0.9), 7: (1.2, 0.75, 0.8)}


class _RoomRenderer:
    """Ray-casts planar rectangles seen by a pinhole camera (x right, y down, z forward)."""

    def __init__(self, image_size):
        h, w = image_size
        fx, fy, cx, cy = (v * s for v, s in zip(NYU_INTRINSICS, (w / 640, h / 480) * 2))
        u, v = np.meshgrid(np.arange(1, w + 1), np.arange(1, h + 1))  # the toolbox's 1-based pixels
        self.rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
        self.depth = np.full((h, w), np.inf)
        self.normal = np.zeros((h, w, 3))
        self.label = np.zeros((h, w), dtype=np.int64)

    def plane(self, normal, offset, label, box=None):
        """Paint the plane {P: normal . P = offset} (``normal`` facing the camera) with ``label``
        where it is the nearest surface so far and P lies in ``box`` ((low, high) xyz bounds)."""
        normal = np.asarray(normal, dtype=np.float64)
        denominator = self.rays @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(denominator < 0, offset / denominator, np.inf)
        visible = (z > 0) & (z < self.depth)
        if box is not None:
            points = z[..., None] * self.rays
            visible &= np.all((points >= box[0] - 1e-9) & (points <= box[1] + 1e-9), axis=-1)
        self.depth[visible] = z[visible]
        self.normal[visible] = normal
        self.label[visible] = label


def _room_scene(image_size, rng):
    """One room seen by NYUv2's Kinect: RGB uint8 (H, W, 3), 40-class labels (H, W) (0 =
    unlabelled, a thin border as in NYUv2), depth (H, W) metres and unit normals (H, W, 3)."""
    room = _RoomRenderer(image_size)
    below, above = rng.uniform(1.1, 1.6), rng.uniform(1.1, 1.5)  # floor / ceiling to the camera
    left, right, back = rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0), rng.uniform(4.0, 7.0)
    for normal, offset, label in (((0, -1, 0), -below, 2), ((0, 1, 0), -above, 22),
                                  ((1, 0, 0), -left, 1), ((-1, 0, 0), -right, 1),
                                  ((0, 0, -1), -back, 1)):
        room.plane(normal, offset, label)
    for label in (9, 11):  # a window and a picture on the back wall
        pw, ph = rng.uniform(0.6, 1.4), rng.uniform(0.5, 1.0)
        x, y = rng.uniform(-left, right - pw), rng.uniform(-above + 0.2, below - ph - 0.8)
        room.plane((0, 0, -1), -(back - 0.01), label,
                   (np.array([x, y, 0]), np.array([x + pw, y + ph, back])))
    for label in rng.choice(list(_FURNITURE), int(rng.integers(1, 4))):
        fw, fh, fd = np.asarray(_FURNITURE[label]) * rng.uniform(0.8, 1.2, 3)
        x0 = rng.uniform(-left, right - fw)
        z0 = rng.uniform(1.5, max(1.6, back - fd - 0.1))
        low, high = np.array([x0, below - fh, z0]), np.array([x0 + fw, below, z0 + fd])
        room.plane((0, 0, -1), -z0, label, (low, high))  # front
        room.plane((0, -1, 0), -(below - fh), label, (low, high))  # top
        room.plane((-1, 0, 0), -x0, label, (low, high))  # left side, seen when x0 > 0
        room.plane((1, 0, 0), x0 + fw, label, (low, high))  # right side, seen when x0 + fw < 0

    colours = np.zeros((41, 3))
    for k, colour in _ROOM_COLOURS.items():
        colours[k] = _jitter(colour, rng, 20)
    rgb = colours[room.label]
    points = room.depth[..., None] * room.rays
    planks = 0.85 + 0.15 * (np.floor(points[..., 0] / 0.25) % 2)  # floor boards
    rgb[room.label == 2] *= planks[room.label == 2, None]
    light = np.array([0.3, -0.8, -0.5]) / np.linalg.norm([0.3, -0.8, -0.5])
    shade = (0.65 + 0.35 * np.abs(room.normal @ light)) / (1 + 0.04 * room.depth)
    rgb = rgb * shade[..., None] + rng.normal(0, 4, rgb.shape)
    border = max(1, image_size[1] // 64)
    label = room.label.copy()
    label[:border], label[-border:], label[:, :border], label[:, -border:] = 0, 0, 0, 0
    return (np.clip(rgb, 0, 255).astype(np.uint8), label, room.depth.astype(np.float32),
            room.normal.astype(np.float32))


def _invalidate(depth, normal, rng):
    """Copies of ``depth`` with a hole of zeros (a Kinect dropout) and ``normal`` with a zero
    border (where normals from depth are undefined)."""
    h, w = depth.shape[:2]
    depth, normal = depth.copy(), normal.copy()
    y, x = rng.integers(0, h - h // 8), rng.integers(0, w - w // 8)
    depth[y : y + h // 8, x : x + w // 8] = 0
    normal[:1], normal[-1:], normal[:, :1], normal[:, -1:] = 0, 0, 0, 0
    return depth, normal


def generate_nyuv2_13(root, num_train, num_val, image_size=(72, 96), seed=0):
    """Write rooms in mtan's preprocessed 13-class NYUv2 layout under ``root``.

    ``root/{train,val}/image/{i}.npy`` float32 (H, W, 3) in [0, 1], ``label/{i}.npy`` float32
    (H, W) classes 0..12 with -1 = unlabelled, ``depth/{i}.npy`` float32 (H, W, 1) metres with
    0 = invalid, ``normal/{i}.npy`` float32 (H, W, 3) unit normals (zero on the border). The real
    data is 288x384 (795 / 654 images).
    """
    _prepare_root(root, ("train", "val"))
    to_13 = np.asarray(NYU_40_TO_13) - 1
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        rng = np.random.default_rng([seed, split_index])
        for sub in ("image", "label", "depth", "normal"):
            os.makedirs(os.path.join(root, split, sub))
        for i in range(count):
            rgb, label, depth, normal = _room_scene(image_size, rng)
            depth, normal = _invalidate(depth, normal, rng)
            arrays = {"image": rgb.astype(np.float32) / 255, "depth": depth[..., None],
                      "label": to_13[label].astype(np.float32), "normal": normal}
            for sub, array in arrays.items():
                np.save(os.path.join(root, split, sub, f"{i}.npy"), array)


def nyud_mt_id(index):
    """The NYUD-MT id of the ``index``-th (1-based) image of nyu_depth_v2_labeled.mat."""
    return f"img_{5000 + index}"


def generate_nyud_mt(root, num_train, num_val, image_size=(72, 96), seed=0):
    """Write rooms in the NYUD-MT (MTI-Net) 40-class layout under ``root``.

    ``root/images/{id}.jpg``, ``segmentation/{id}.png`` (8-bit, 0 = unlabelled, 1..40),
    ``depth/{id}.npy`` float32 (H, W) metres with 0 = invalid, ``normals/{id}.npy`` float32
    (H, W, 3) in [-1, 1] (zero = invalid) and ``gt_sets/{train,val}.txt`` listing the ids. The
    real data is 480x640 (795 / 654 images).
    """
    subdirs = ("images", "segmentation", "depth", "normals", "gt_sets")
    _prepare_root(root, subdirs)
    for sub in subdirs:
        os.makedirs(os.path.join(root, sub))
    rng = np.random.default_rng(seed)
    ids = [nyud_mt_id(k) for k in range(1, num_train + num_val + 1)]
    for image_id in ids:
        rgb, label, depth, normal = _room_scene(image_size, rng)
        depth, normal = _invalidate(depth, normal, rng)
        Image.fromarray(rgb).save(os.path.join(root, "images", f"{image_id}.jpg"), quality=95)
        Image.fromarray(label.astype(np.uint8)).save(
            os.path.join(root, "segmentation", f"{image_id}.png"))
        np.save(os.path.join(root, "depth", f"{image_id}.npy"), depth)
        np.save(os.path.join(root, "normals", f"{image_id}.npy"), normal)
    for split, split_ids in (("train", ids[:num_train]), ("val", ids[num_train:])):
        with open(os.path.join(root, "gt_sets", f"{split}.txt"), "w") as f:
            f.writelines(f"{image_id}\n" for image_id in split_ids)


def _write_mat_v73(path, arrays):
    """Write ``arrays`` {name: (array, MATLAB class)} as a MATLAB v7.3 MAT-file: HDF5 behind a
    512-byte MATLAB header, each dataset tagged with its MATLAB_class. Arrays are stored as
    given, i.e. already in the reversed (column-major) axis order MATLAB writes."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, (array, matlab_class) in arrays.items():
            f.create_dataset(name, data=array)
            f[name].attrs["MATLAB_class"] = np.bytes_(matlab_class)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: sta_d2 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\0\x02" + b"IM")


def generate_nyuv2_mat(root, num_train, num_val, image_size=(72, 96), seed=0):
    """Write rooms as the official NYUv2 release under ``root``: ``nyu_depth_v2_labeled.mat``,
    ``splits.mat``, ``classMapping40.mat`` and ``class13Mapping.mat``.

    The labeled .mat is HDF5 (MATLAB v7.3) holding, as MATLAB stores an H x W x 3 x N array,
    ``images`` uint8 (N, 3, W, H), ``depths`` float32 (N, W, H) metres and ``labels`` uint16
    (N, W, H) with 0 = unlabelled and 1..894 the raw classes. splits.mat (MATLAB v5) holds
    1-based column vectors ``trainNdxs`` and ``testNdxs``; classMapping40.mat ``mapClass``
    (1 x 894, raw class -> 1..40; random here, not the real table) and ``className`` (1 x 40
    cell); class13Mapping.mat a struct ``classMapping13`` with the real 40 -> 13 table
    (1 x 40) and ``labelName`` (1 x 13 cell). The real images are 480x640 (1449: 795 / 654).
    """
    import scipy.io

    from .datasets.nyuv2 import NYUV2_13_CLASSES, NYUV2_40_CLASSES

    _prepare_root(root, ())
    rng = np.random.default_rng(seed)
    map_class = 1 + rng.permutation(894) % 40  # raw class k -> map_class[k - 1]
    raw_ids = {c: np.flatnonzero(map_class == c) + 1 for c in range(1, 41)}
    n = num_train + num_val
    h, w = image_size
    images = np.zeros((n, 3, w, h), np.uint8)
    depths = np.zeros((n, w, h), np.float32)
    labels = np.zeros((n, w, h), np.uint16)
    for k in range(n):
        rgb, label40, depth, _ = _room_scene(image_size, rng)
        raw = np.zeros(41, np.uint16)
        raw[1:] = [rng.choice(raw_ids[c]) for c in range(1, 41)]
        images[k], depths[k], labels[k] = rgb.transpose(2, 1, 0), depth.T, raw[label40].T
    _write_mat_v73(os.path.join(root, "nyu_depth_v2_labeled.mat"),
                   {"images": (images, "uint8"), "depths": (depths, "single"),
                    "labels": (labels, "uint16")})
    order = rng.permutation(n) + 1
    scipy.io.savemat(os.path.join(root, "splits.mat"), {
        "trainNdxs": np.sort(order[:num_train]).astype(np.float64)[:, None],
        "testNdxs": np.sort(order[num_train:]).astype(np.float64)[:, None],
    })
    scipy.io.savemat(os.path.join(root, "classMapping40.mat"), {
        "mapClass": map_class.astype(np.float64)[None, :], "className": _cell(NYUV2_40_CLASSES)})
    scipy.io.savemat(os.path.join(root, "class13Mapping.mat"), {"classMapping13": {
        "classMapping13": np.asarray(NYU_40_TO_13[1:], np.float64)[None, :],
        "labelName": _cell(NYUV2_13_CLASSES)}})


def _cell(strings):
    """A 1 x N MATLAB cell array of strings, for scipy.io.savemat."""
    return np.array(list(strings), dtype=object)[None, :]


# layout -> (generator, default image size)
GENERATORS = {
    "coco": (generate_coco_shapes, (128, 128)),
    "cityscapes": (generate_cityscapes, (128, 256)),
    "cityscapes_npy": (generate_cityscapes_npy, (64, 128)),
    "nyuv2_13": (generate_nyuv2_13, (72, 96)),
    "nyud_mt": (generate_nyud_mt, (72, 96)),
    "nyuv2_mat": (generate_nyuv2_mat, (72, 96)),
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("layout", choices=tuple(GENERATORS))
    parser.add_argument("--root", required=True, help="dataset directory to (re)write")
    parser.add_argument("--num-train", type=int, default=100)
    parser.add_argument("--num-val", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="default: " +
                        ", ".join(f"{h} {w} ({k})" for k, (_, (h, w)) in GENERATORS.items()))
    args = parser.parse_args(argv)
    if min(args.num_train, args.num_val) < 0:
        parser.error("--num-train and --num-val must be >= 0")
    generate, size = GENERATORS[args.layout]
    generate(args.root, args.num_train, args.num_val, seed=args.seed,
             image_size=tuple(args.image_size or size))
    print(f"Wrote {args.num_train} train and {args.num_val} val images in the {args.layout} "
          f"layout to {args.root}")


if __name__ == "__main__":
    main()
