#!/usr/bin/env python
"""Convert the official NYUv2 release into the two dense layouts sta_d2 reads.

Inputs (see datasets/README.md for where they come from):
  nyu_depth_v2_labeled.mat  HDF5 (MATLAB v7.3): images (N, 3, W, H) uint8, depths (N, W, H)
                            metres (in-painted), labels (N, W, H) 0 = unlabelled, 1..894
  splits.mat                trainNdxs (795) / testNdxs (654), 1-based indices into the .mat
  classMapping40.mat        mapClass: raw class 1..894 -> Gupta's 40 classes 1..40
  class13Mapping.mat        struct classMapping13 whose 40-entry field maps 1..40 -> 1..13

Outputs, under --out-dir (default $DETECTRON2_DATASETS or ./datasets):
  nyuv2/{train,val}/{image,label,depth,normal}/{i}.npy   mtan's 13-class layout at --mtan-size
      (default 288x384): image float32 [0, 1], label float32 0..12 (-1 = unlabelled), depth
      float32 (H, W, 1) metres, normal float32 (H, W, 3); i counts the split's images in
      splits.mat order.
  NYUD_MT/{images,segmentation,depth,normals,gt_sets}    the NYUD-MT (MTI-Net) 40-class layout
      at the .mat's resolution (480x640): {id}.jpg, {id}.png (0 = unlabelled, 1..40),
      {id}.npy depth (H, W), {id}.npy normals (H, W, 3), gt_sets/{train,val}.txt; the id of
      image k (1-based) is img_{5000 + k}.

Surface normals are not part of the official release. The preprocessed sets people download
ship precomputed normals (mtan: Eigen & Fergus's; NYUD-MT: its own); this script instead computes
them from the in-painted depth with the Kinect RGB intrinsics of the NYU toolbox (central
differences of the back-projected points, camera frame x right, y down, z forward, normals
facing the camera; zero where the depth or a neighbour is invalid). They approximate the usual
ones on smooth surfaces and are noisier at depth discontinuities, so normal metrics on them are
not comparable to published numbers. Images are resized bilinearly, every target by nearest
neighbour.

    python datasets/prepare_nyuv2.py --mat nyu_depth_v2_labeled.mat --splits splits.mat \\
        --mapping40 classMapping40.mat --mapping13 class13Mapping.mat

Needs numpy, Pillow, h5py and scipy.
"""
import argparse
import os

import numpy as np
from PIL import Image

# Kinect RGB camera (fx, fy, cx, cy) of the NYU toolbox (camera_params.m), 640x480, 1-based pixels.
KINECT_INTRINSICS = (518.857901, 519.469611, 325.582449, 253.736166)


def nyud_mt_id(index):
    """The NYUD-MT id of the ``index``-th (1-based) image of the labeled .mat."""
    return f"img_{5000 + index}"


def _column(mat, key, path):
    """A 1-based integer vector ``key`` of the MATLAB v5 file ``mat`` read from ``path``."""
    if key not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: no variable {key!r} (it has {names})")
    return np.asarray(mat[key]).ravel().astype(np.int64)


def read_splits(path):
    """(train, test) 1-based image indices of splits.mat."""
    import scipy.io

    mat = scipy.io.loadmat(path)
    return _column(mat, "trainNdxs", path), _column(mat, "testNdxs", path)


def read_mapping40(path):
    """Lookup table raw class (0..894) -> 40-class id (0 = unlabelled) of classMapping40.mat."""
    import scipy.io

    mapping = _column(scipy.io.loadmat(path), "mapClass", path)
    if mapping.size != 894 or mapping.min() < 1 or mapping.max() > 40:
        raise ValueError(f"{path}: mapClass should map 894 raw classes to 1..40")
    return np.concatenate([[0], mapping])


def read_mapping13(path):
    """Lookup table 40-class id (0..40) -> 13-class id (0 = unlabelled) of class13Mapping.mat:
    the 40-entry field of its ``classMapping13`` struct."""
    import scipy.io

    mat = scipy.io.loadmat(path)
    if "classMapping13" not in mat or mat["classMapping13"].dtype.names is None:
        raise ValueError(f"{path}: no struct 'classMapping13'")
    struct = mat["classMapping13"][0, 0]
    fields = [np.asarray(struct[name]).ravel() for name in struct.dtype.names]
    mapping = next((v for v in fields if v.size == 40 and v.dtype.kind in "iuf"), None)
    if mapping is None or mapping.min() < 1 or mapping.max() > 13:
        raise ValueError(f"{path}: classMapping13 has no field mapping 40 classes to 1..13")
    return np.concatenate([[0], mapping.astype(np.int64)])


def normals_from_depth(depth, intrinsics):
    """Unit normals (H, W, 3) of a depth map (metres, <= 0 or non-finite = invalid) seen by a
    pinhole camera (fx, fy, cx, cy) with 1-based pixel coordinates; zero where undefined."""
    h, w = depth.shape
    fx, fy, cx, cy = intrinsics
    u, v = np.meshgrid(np.arange(1, w + 1), np.arange(1, h + 1))
    z = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float64)
    points = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)
    normals = np.cross(np.gradient(points, axis=1), np.gradient(points, axis=0))
    normals *= -np.sign(np.sum(normals * points, axis=-1, keepdims=True))  # face the camera
    valid = z > 0
    padded = np.pad(valid, 1, mode="edge")
    valid &= padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid &= norm[..., 0] > 0
    out = np.divide(normals, norm, out=np.zeros_like(normals), where=valid[..., None])
    return out.astype(np.float32)


def resize_nearest(array, size):
    """Nearest-neighbour resize of an (H, W, ...) array to ``size`` (the source pixel holding
    each output pixel's centre; values are copied, never blended)."""
    rows = np.minimum(((np.arange(size[0]) + 0.5) * array.shape[0] / size[0]).astype(int),
                      array.shape[0] - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * array.shape[1] / size[1]).astype(int),
                      array.shape[1] - 1)
    return array[rows][:, cols]


def _write_mtan(split_dir, i, rgb, label13, depth, normal, size):
    arrays = {
        "image": np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR),
                            dtype=np.float32) / 255,
        "label": resize_nearest(label13, size).astype(np.float32) - 1,
        "depth": resize_nearest(depth, size)[..., None],
        "normal": resize_nearest(normal, size),
    }
    for sub, array in arrays.items():
        os.makedirs(os.path.join(split_dir, sub), exist_ok=True)
        np.save(os.path.join(split_dir, sub, f"{i}.npy"), array)


def _write_nyud_mt(root, image_id, rgb, label40, depth, normal):
    for sub in ("images", "segmentation", "depth", "normals"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    Image.fromarray(rgb).save(os.path.join(root, "images", f"{image_id}.jpg"), quality=95)
    Image.fromarray(label40.astype(np.uint8)).save(
        os.path.join(root, "segmentation", f"{image_id}.png"))
    np.save(os.path.join(root, "depth", f"{image_id}.npy"), depth)
    np.save(os.path.join(root, "normals", f"{image_id}.npy"), normal)


def _read_labeled(f, path, k):
    """(rgb (H, W, 3) uint8, labels (H, W), depth (H, W) float32) of image k (1-based)."""
    try:
        rgb = np.asarray(f["images"][k - 1]).transpose(2, 1, 0)
        labels = np.asarray(f["labels"][k - 1]).T
        depth = np.asarray(f["depths"][k - 1], dtype=np.float32).T
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{path}: cannot read image {k} ({e}); expected the datasets images "
                         "(N, 3, W, H), labels and depths (N, W, H)") from e
    if rgb.shape[2] != 3 or labels.shape != depth.shape or labels.shape != rgb.shape[:2]:
        raise ValueError(f"{path}: image {k} has images {rgb.shape}, labels {labels.shape} and "
                         f"depths {depth.shape} (after transposing to H x W)")
    if labels.max() > 894:
        raise ValueError(f"{path}: image {k} has raw label {labels.max()} > 894")
    return np.ascontiguousarray(rgb, dtype=np.uint8), labels.astype(np.int64), depth


def convert(mat_path, splits_path, mapping40_path, mapping13_path, out_dir,
            mtan_size=(288, 384)):
    """Write ``out_dir/nyuv2`` (mtan, 13 classes) and ``out_dir/NYUD_MT`` (40 classes)."""
    import h5py

    train, test = read_splits(splits_path)
    to40, to13 = read_mapping40(mapping40_path), read_mapping13(mapping13_path)
    mtan_root, nyud_root = os.path.join(out_dir, "nyuv2"), os.path.join(out_dir, "NYUD_MT")
    for root in (mtan_root, nyud_root):
        if os.path.isdir(root) and os.listdir(root):
            raise FileExistsError(f"{root} is not empty; remove it or choose another --out-dir")
    try:
        f = h5py.File(mat_path, "r")
    except OSError as e:
        raise ValueError(f"{mat_path}: not an HDF5 (MATLAB v7.3) file ({e})") from e
    with f:
        n = f["images"].shape[0] if "images" in f else 0
        bad = [k for k in np.concatenate([train, test]) if not 1 <= k <= n]
        if bad:
            raise ValueError(f"{splits_path}: index {bad[0]} is outside the {n} images of "
                             f"{mat_path}")
        os.makedirs(os.path.join(nyud_root, "gt_sets"))
        for split, indices in (("train", train), ("val", test)):
            for i, k in enumerate(indices):
                rgb, raw, depth = _read_labeled(f, mat_path, k)
                h, w = depth.shape
                scale = (w / 640, h / 480, w / 640, h / 480)
                intrinsics = [c * s for c, s in zip(KINECT_INTRINSICS, scale)]
                normal = normals_from_depth(depth, intrinsics)
                label40 = to40[raw]
                _write_mtan(os.path.join(mtan_root, split), i, rgb, to13[label40], depth, normal,
                            tuple(mtan_size))
                _write_nyud_mt(nyud_root, nyud_mt_id(k), rgb, label40, depth, normal)
            with open(os.path.join(nyud_root, "gt_sets", f"{split}.txt"), "w") as out:
                out.writelines(f"{nyud_mt_id(k)}\n" for k in indices)
    return len(train), len(test)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mat", required=True, help="nyu_depth_v2_labeled.mat")
    parser.add_argument("--splits", required=True, help="splits.mat")
    parser.add_argument("--mapping40", required=True, help="classMapping40.mat")
    parser.add_argument("--mapping13", required=True, help="class13Mapping.mat")
    parser.add_argument("--out-dir", default=os.getenv("DETECTRON2_DATASETS", "datasets"))
    parser.add_argument("--mtan-size", type=int, nargs=2, default=(288, 384), metavar=("H", "W"))
    args = parser.parse_args(argv)
    for option in ("mat", "splits", "mapping40", "mapping13"):
        path = getattr(args, option)
        if not os.path.isfile(path):
            parser.error(f"--{option}: input file {path} does not exist")
    if min(args.mtan_size) < 1:
        parser.error("--mtan-size must be two positive integers")
    num_train, num_val = convert(args.mat, args.splits, args.mapping40, args.mapping13,
                                 args.out_dir, args.mtan_size)
    print(f"Wrote {num_train} train and {num_val} val images to {args.out_dir}/nyuv2 (13 classes) "
          f"and {args.out_dir}/NYUD_MT (40 classes)")


if __name__ == "__main__":
    main()
