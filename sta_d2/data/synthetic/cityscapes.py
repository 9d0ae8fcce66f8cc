"""Street scenes in Cityscapes' gtFine/disparity/camera layout and in mtan's .npy layout."""
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from .common import disjoint, jitter, noisy, prepare_root

# Real Cityscapes city names: train cities for "train", validation cities for "val".
CITYSCAPES_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau")}
_CITYSCAPES_FRAME = 19  # gtFine annotates frame 19 of each 30-frame snippet

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
        if disjoint(box, boxes, 2):
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
        colour = jitter(name2label[label].color, rng, 20)
        outline = tuple(c // 2 for c in colour) if name2label[label].hasInstances else None
        draw.polygon([tuple(p) for p in polygon], fill=colour, outline=outline)
    return noisy(canvas, rng, 5.0)


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
    prepare_root(root, kinds)
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
    prepare_root(root, ("train", "val"))
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
