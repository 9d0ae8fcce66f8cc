"""Rooms in the NYUv2 layouts: mtan's 13-class .npy, NYUD-MT (40 classes) and the official .mat."""
import os

import numpy as np
from PIL import Image

from ..datasets.nyuv2 import NYUV2_13_CLASSES, NYUV2_40_CLASSES
from .common import jitter, prepare_root

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
        colours[k] = jitter(colour, rng, 20)
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


def generate_nyuv2_13(root, num_train, num_val, image_size=(72, 96), seed=0, num_train_extra=0):
    """Write rooms in mtan's preprocessed 13-class NYUv2 layout under ``root``.

    ``root/{train,val}/image/{i}.npy`` float32 (H, W, 3) in [0, 1], ``label/{i}.npy`` float32
    (H, W) classes 0..12 with -1 = unlabelled, ``depth/{i}.npy`` float32 (H, W, 1) metres with
    0 = invalid, ``normal/{i}.npy`` float32 (H, W, 3) unit normals (zero on the border). The real
    data is 288x384 (795 / 654 images). ``num_train_extra`` > 0 also writes the depth-only split
    ``root/train_extra/{image,depth}/{i}.npy`` (the layout of ``nyuv2_13_train_extra``).
    """
    prepare_root(root, ("train", "val", "train_extra"))
    to_13 = np.asarray(NYU_40_TO_13) - 1
    splits = (("train", num_train), ("val", num_val), ("train_extra", num_train_extra))
    for split_index, (split, count) in enumerate(splits):
        depth_only = split == "train_extra"
        if depth_only and not count:
            continue
        rng = np.random.default_rng([seed, split_index])
        subs = ("image", "depth") if depth_only else ("image", "label", "depth", "normal")
        for sub in subs:
            os.makedirs(os.path.join(root, split, sub))
        for i in range(count):
            rgb, label, depth, normal = _room_scene(image_size, rng)
            depth, normal = _invalidate(depth, normal, rng)
            arrays = {"image": rgb.astype(np.float32) / 255, "depth": depth[..., None],
                      "label": to_13[label].astype(np.float32), "normal": normal}
            for sub in subs:
                np.save(os.path.join(root, split, sub, f"{i}.npy"), arrays[sub])


def nyud_mt_id(index):
    """The NYUD-MT id of the ``index``-th (1-based) image of nyu_depth_v2_labeled.mat."""
    return f"img_{5000 + index}"


def nyud_mt_extra_id(index):
    """The id of the ``index``-th (1-based) depth-only image of the synthetic ``train_extra``."""
    return f"extra_{index:06d}"


def generate_nyud_mt(root, num_train, num_val, image_size=(72, 96), seed=0, num_train_extra=0):
    """Write rooms in the NYUD-MT (MTI-Net) 40-class layout under ``root``.

    ``root/images/{id}.jpg``, ``segmentation/{id}.png`` (8-bit, 0 = unlabelled, 1..40),
    ``depth/{id}.npy`` float32 (H, W) metres with 0 = invalid, ``normals/{id}.npy`` float32
    (H, W, 3) in [-1, 1] (zero = invalid) and ``gt_sets/{train,val}.txt`` listing the ids. The
    real data is 480x640 (795 / 654 images). ``num_train_extra`` > 0 also writes depth-only
    images (``images/`` and ``depth/`` only) listed in ``gt_sets/train_extra.txt`` (the layout of
    ``nyuv2_40_train_extra``).
    """
    subdirs = ("images", "segmentation", "depth", "normals", "gt_sets")
    prepare_root(root, subdirs)
    for sub in subdirs:
        os.makedirs(os.path.join(root, sub))
    rng = np.random.default_rng(seed)
    ids = [nyud_mt_id(k) for k in range(1, num_train + num_val + 1)]
    extra_ids = [nyud_mt_extra_id(k) for k in range(1, num_train_extra + 1)]
    extra_rng = np.random.default_rng([seed, 1])  # leaves rng's images as without extra ones
    scenes = [(i, rng, True) for i in ids] + [(i, extra_rng, False) for i in extra_ids]
    for image_id, scene_rng, fully_labelled in scenes:
        rgb, label, depth, normal = _room_scene(image_size, scene_rng)
        depth, normal = _invalidate(depth, normal, scene_rng)
        Image.fromarray(rgb).save(os.path.join(root, "images", f"{image_id}.jpg"), quality=95)
        np.save(os.path.join(root, "depth", f"{image_id}.npy"), depth)
        if fully_labelled:
            Image.fromarray(label.astype(np.uint8)).save(
                os.path.join(root, "segmentation", f"{image_id}.png"))
            np.save(os.path.join(root, "normals", f"{image_id}.npy"), normal)
    splits = [("train", ids[:num_train]), ("val", ids[num_train:])]
    if extra_ids:
        splits.append(("train_extra", extra_ids))
    for split, split_ids in splits:
        with open(os.path.join(root, "gt_sets", f"{split}.txt"), "w") as f:
            f.writelines(f"{image_id}\n" for image_id in split_ids)


def _write_mat_v73(path, arrays):
    """Write ``arrays`` {name: (array, MATLAB class)} as a MATLAB v7.3 MAT-file: HDF5 behind a
    512-byte MATLAB header, each dataset tagged with its MATLAB_class. Arrays are stored as
    given, i.e. already in the reversed (column-major) axis order MATLAB writes."""
    import h5py  # an optional dependency, needed only for the .mat layout

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
    import scipy.io  # an optional dependency, needed only for the .mat layout

    prepare_root(root, ())
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
