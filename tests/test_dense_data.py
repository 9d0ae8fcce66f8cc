"""Dense multi-task data: generated NYUv2 / NYUD-MT / Cityscapes layouts, their loaders and
registrations, DenseDatasetMapper's decoding, geometry and augmentation, and bad input."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from conftest import dense_cfg
from sta_d2 import STAConfigError, add_sta_config, validate_sta_config
from sta_d2.data import DenseDatasetMapper, DenseResizeTransform
from sta_d2.data.datasets import (
    NYUV2_13_CLASSES,
    NYUV2_40_CLASSES,
    cityscapes_inst_sem_metadata,
    load_cityscapes_depth_seg,
    load_cityscapes_npy,
    load_nyud_mt,
    load_nyuv2_13,
    register_all_cityscapes_disparity,
    register_all_nyuv2,
)
from sta_d2.data.synthetic.cli import main
from sta_d2.data.synthetic import (
    NYU_40_TO_13,
    generate_cityscapes,
    generate_cityscapes_npy,
    generate_nyud_mt,
    generate_nyuv2_13,
)

SIZE = (24, 32)  # generated NYUv2 images


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Every dense layout, generated once, under one $DETECTRON2_DATASETS-like root."""
    root = tmp_path_factory.mktemp("dense")
    generate_nyuv2_13(str(root / "nyuv2"), 3, 2, image_size=SIZE, seed=1)
    generate_nyud_mt(str(root / "NYUD_MT"), 3, 2, image_size=SIZE, seed=2)
    generate_cityscapes(str(root / "cityscapes"), 2, 1, image_size=(32, 64), seed=3)
    generate_cityscapes_npy(str(root / "cityscapes_npy"), 2, 1, image_size=(32, 64), seed=4)
    return root


def test_mtan_nyuv2_layout(data_root):
    split = data_root / "nyuv2" / "train"
    assert sorted(os.listdir(split)) == ["depth", "image", "label", "normal"]
    image, label, depth, normal = (np.load(split / sub / "1.npy")
                                   for sub in ("image", "label", "depth", "normal"))
    assert image.shape == (*SIZE, 3) and image.dtype == np.float32 and 0 <= image.min() <= 1
    assert label.shape == SIZE and set(np.unique(label)) <= set(range(-1, 13)) and -1 in label
    assert depth.shape == (*SIZE, 1) and (depth == 0).any() and depth.max() > 1
    norms = np.linalg.norm(normal, axis=2)
    assert normal.shape == (*SIZE, 3) and np.allclose(norms[norms > 0], 1) and (norms == 0).any()


def test_nyud_mt_layout(data_root):
    root = data_root / "NYUD_MT"
    ids = {s: (root / "gt_sets" / f"{s}.txt").read_text().split() for s in ("train", "val")}
    assert len(ids["train"]) == 3 and len(ids["val"]) == 2
    image_id = ids["val"][0]
    assert Image.open(root / "images" / f"{image_id}.jpg").size == SIZE[::-1]
    seg = np.asarray(Image.open(root / "segmentation" / f"{image_id}.png"))
    assert seg.dtype == np.uint8 and seg.max() <= 40 and 0 in seg
    assert np.load(root / "depth" / f"{image_id}.npy").shape == SIZE
    assert np.abs(np.load(root / "normals" / f"{image_id}.npy")).max() <= 1


def test_cityscapes_disparity_and_camera_layout(data_root):
    root = data_root / "cityscapes"
    (disparity,) = (root / "disparity" / "val" / "frankfurt").iterdir()
    assert disparity.name == "frankfurt_000000_000019_disparity.png"
    assert disparity.read_bytes()[24:26] == bytes([16, 0])  # PNG IHDR: 16-bit greyscale
    p = np.asarray(Image.open(disparity))
    assert p.shape == (32, 64) and (p == 0).any() and p.max() > 256
    camera = json.loads((root / "camera" / "val" / "frankfurt" /
                         "frankfurt_000000_000019_camera.json").read_text())
    assert set(camera["extrinsic"]) >= {"baseline", "pitch", "roll", "yaw", "x", "y", "z"}
    assert set(camera["intrinsic"]) == {"fx", "fy", "u0", "v0"}
    # the road below the horizon gets nearer (larger disparity) towards the bottom
    labels = np.asarray(Image.open(str(disparity).replace("disparity", "gtFine").replace(
        "gtFine.png", "gtFine_labelTrainIds.png")))
    road = np.where((labels == 0) & (p > 0), p, 0).max(axis=1)
    rows = np.flatnonzero(road)
    assert np.all(np.diff(road[rows]) >= 0) and road[rows[-1]] > road[rows[0]]


def _loaders(root):
    return {
        "nyuv2_13": (lambda: load_nyuv2_13(str(root / "nyuv2" / "train")), 3,
                     ("sem_seg", "depth", "normal")),
        "nyuv2_40": (lambda: load_nyud_mt(str(root / "NYUD_MT"), "val"), 2,
                     ("sem_seg", "depth", "normal")),
        "cityscapes_depth_seg": (lambda: load_cityscapes_depth_seg(str(root / "cityscapes"),
                                                                   "train"), 2,
                                 ("sem_seg", "disparity")),
        "cityscapes_npy": (lambda: load_cityscapes_npy(str(root / "cityscapes_npy" / "val")), 1,
                           ("sem_seg", "disparity")),
    }


@pytest.mark.parametrize("layout", ["nyuv2_13", "nyuv2_40", "cityscapes_depth_seg",
                                    "cityscapes_npy"])
def test_each_layout_loads_and_maps(data_root, layout):
    load, count, tasks = _loaders(data_root)[layout]
    records = load()
    assert len(records) == count
    for record in records:
        assert os.path.isfile(record["file_name"])
        assert all(os.path.isfile(record[f"{t}_file_name"]) for t in tasks)
        others = {"depth", "normal", "disparity"} - set(tasks)
        assert not any(f"{t}_file_name" in record for t in others)
    out = DenseDatasetMapper(is_train=False)(records[0])
    h, w = records[0]["height"], records[0]["width"]
    assert (out["height"], out["width"]) == (h, w) and out["image_id"] == records[0]["image_id"]
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, h, w)
    assert 0 <= out["image"].min() and out["image"].max() <= 255 and out["image"].max() > 1
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (h, w)
    classes = 19 if layout.startswith("cityscapes") else int(layout[-2:])
    assert set(out["sem_seg"].unique().tolist()) <= set(range(classes)) | {255}
    for task, channels in (("depth", 1), ("normal", 3), ("disparity", 1)):
        if task in tasks:
            assert out[task].dtype == torch.float32 and out[task].shape == (channels, h, w)
            assert (out[task] == 0).all(dim=0).any()  # some invalid pixels
        else:
            assert task not in out
    if "normal" in tasks:
        norms = out["normal"].norm(dim=0)
        assert torch.allclose(norms[norms > 0], torch.ones(1), atol=1e-5)


@pytest.fixture
def named_at(reregister):
    """Re-registers the dense dataset names at another root."""
    names = [f"{base}_{s}" for base in ("nyuv2_13", "nyuv2_40", "cityscapes_depth_seg",
                                        "cityscapes_npy") for s in ("train", "val")]
    names += ["nyuv2_13_train_extra", "nyuv2_40_train_extra"]
    return lambda root: reregister(root, names, register_all_nyuv2, register_all_cityscapes_disparity)


def test_registered_names_and_metadata(data_root, named_at):
    named_at(str(data_root))
    expected = {
        "nyuv2_13_val": (2, NYUV2_13_CLASSES, ("sem_seg", "depth", "normal"), "metres"),
        "nyuv2_40_train": (3, NYUV2_40_CLASSES, ("sem_seg", "depth", "normal"), "metres"),
        "cityscapes_depth_seg_val": (1, None, ("sem_seg", "disparity"), "pixels (disparity)"),
        "cityscapes_npy_train": (2, None, ("sem_seg", "disparity"), None),
    }
    city_classes = cityscapes_inst_sem_metadata()["stuff_classes"]
    for name, (count, classes, tasks, unit) in expected.items():
        meta = MetadataCatalog.get(name)
        assert len(DatasetCatalog.get(name)) == count
        assert (meta.evaluator_type, meta.ignore_label, meta.dense_tasks) == ("dense", 255, tasks)
        assert list(meta.stuff_classes) == list(classes or city_classes)
        assert meta.depth_unit == unit or (unit is None and "mtan" in meta.depth_unit)
    assert len(NYUV2_13_CLASSES) == 13 and len(NYUV2_40_CLASSES) == 40 and len(city_classes) == 19


# ---------------------------------------------------------------- decoding


def test_ignore_and_invalid_values_are_decoded(copy_of):
    split = copy_of("nyuv2") / "val"
    depth = np.load(split / "depth" / "0.npy")
    depth[0, 0, 0], depth[0, 1, 0], depth[0, 2, 0] = np.nan, np.inf, -1.0
    np.save(split / "depth" / "0.npy", depth)
    out = DenseDatasetMapper(is_train=False)(load_nyuv2_13(str(split))[0])
    label = np.load(split / "label" / "0.npy")
    np.testing.assert_array_equal(out["sem_seg"].numpy(), np.where(label == -1, 255, label))
    assert (out["depth"][0, 0, :3] == 0).all()
    valid = np.isfinite(depth[..., 0]) & (depth[..., 0] > 0)
    np.testing.assert_array_equal(out["depth"][0].numpy()[valid], depth[..., 0][valid])
    assert (out["depth"][0].numpy()[~valid] == 0).all()
    np.testing.assert_allclose(out["image"].permute(1, 2, 0).numpy(),
                               np.load(split / "image" / "0.npy") * 255, rtol=1e-6)


def test_nyud_labels_shift_and_cityscapes_disparity_decodes(data_root):
    record = load_nyud_mt(str(data_root / "NYUD_MT"), "train")[0]
    out = DenseDatasetMapper(is_train=False)(record)
    png = np.asarray(Image.open(record["sem_seg_file_name"])).astype(np.int64)
    np.testing.assert_array_equal(out["sem_seg"].numpy(), np.where(png == 0, 255, png - 1))

    record = load_cityscapes_depth_seg(str(data_root / "cityscapes"), "val")[0]
    out = DenseDatasetMapper(is_train=False)(record)
    p = np.asarray(Image.open(record["disparity_file_name"])).astype(np.float64)
    y, x = np.argwhere(p > 0)[0]
    assert out["disparity"][0, y, x].item() == pytest.approx((p[y, x] - 1) / 256)
    assert (out["disparity"][0].numpy()[p == 0] == 0).all()


# ---------------------------------------------------------------- geometry and augmentation


@pytest.fixture
def nyu_record(data_root):
    return load_nyuv2_13(str(data_root / "nyuv2" / "train"))[1]


def test_resize_to_size_is_bilinear_for_images_and_nearest_for_targets(nyu_record):
    out = DenseDatasetMapper(is_train=False, size=(17, 45))(nyu_record)
    stored = DenseDatasetMapper(is_train=False)(nyu_record)
    assert out["image"].shape == (3, 17, 45) and (out["height"], out["width"]) == (17, 45)
    for task in ("sem_seg", "depth", "normal"):
        src = stored[task].reshape(-1, *SIZE)
        dst = out[task].reshape(-1, 17, 45)
        # every output pixel is a stored pixel: nearest never blends valid with invalid
        src_pixels = {tuple(v) for v in src.flatten(1).T.tolist()}
        assert {tuple(v) for v in dst.flatten(1).T.tolist()} <= src_pixels
    assert (out["depth"] == 0).any() and ((out["depth"] > 0) & (out["depth"] < 0.5)).sum() == 0
    # bilinear: the image takes values between its neighbours', not only stored ones
    assert not set(out["image"].flatten().tolist()) <= set(stored["image"].flatten().tolist())


def test_nearest_resize_maps_invalid_pixels_to_invalid_only():
    depth = np.array([[0, 2.0, 2.0, 0], [4.0, 0, 0, 4.0]], dtype=np.float32)
    up = DenseResizeTransform(2, 4, 4, 8).apply_segmentation(depth)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(depth, 2, axis=0), 2, axis=1))
    down = DenseResizeTransform(2, 4, 1, 2).apply_segmentation(depth)
    np.testing.assert_array_equal(down, [[0.0, 4.0]])  # the pixels under the output centres


def _flip_and_plain(record, seeds=range(12)):
    """(flipped, plain) outputs of a flipping mapper, told apart by the image."""
    mapper = DenseDatasetMapper(is_train=True, flip="horizontal")
    reference = DenseDatasetMapper(is_train=False)(record)
    outputs = {True: [], False: []}
    for seed in seeds:
        np.random.seed(seed)
        out = mapper(record)
        outputs[torch.equal(out["image"], reference["image"].flip(-1))].append(out)
    assert outputs[True] and outputs[False]
    for out in outputs[False]:
        assert torch.equal(out["image"], reference["image"])
    return outputs[True][0], reference


def test_flip_mirrors_all_targets_and_negates_normal_x(nyu_record):
    flipped, plain = _flip_and_plain(nyu_record)
    w = SIZE[1]
    y, x = 5, 3
    for task in ("sem_seg", "depth"):
        assert torch.equal(flipped[task], plain[task].flip(-1))
        assert flipped[task][..., y, x].tolist() == plain[task][..., y, w - 1 - x].tolist()
    assert flipped["normal"][:, y, x].tolist() == [
        -plain["normal"][0, y, w - 1 - x].item(), *plain["normal"][1:, y, w - 1 - x].tolist()]
    expected = plain["normal"].flip(-1)
    expected[0] *= -1
    assert torch.equal(flipped["normal"], expected)


def test_random_scale_zooms_and_rescales_depth_and_disparity(nyu_record, data_root):
    plain = DenseDatasetMapper(is_train=False)(nyu_record)
    np.random.seed(0)
    zoomed = DenseDatasetMapper(is_train=True, scales=(2.0,))(nyu_record)
    assert zoomed["depth"].shape == plain["depth"].shape
    stored = set(plain["depth"].flatten().tolist())
    assert {v * 2 for v in zoomed["depth"].flatten().tolist()} <= stored  # depth / s
    assert set(zoomed["sem_seg"].flatten().tolist()) <= set(plain["sem_seg"].flatten().tolist())

    record = load_cityscapes_depth_seg(str(data_root / "cityscapes"), "train")[0]
    plain = DenseDatasetMapper(is_train=False)(record)["disparity"]
    np.random.seed(0)
    zoomed = DenseDatasetMapper(is_train=True, scales=(2.0,))(record)["disparity"]
    assert {v / 2 for v in zoomed.flatten().tolist()} <= set(plain.flatten().tolist())
    # resizing to SIZE rescales disparity to pixels of the returned image
    half = DenseDatasetMapper(is_train=False, size=(16, 32))(record)["disparity"]
    assert {v * 2 for v in half.flatten().tolist()} <= set(plain.flatten().tolist())


def test_mapper_is_deterministic_under_numpy_seeding(nyu_record):
    mapper = DenseDatasetMapper(is_train=True, size=(20, 28), scales=(1.0, 1.25, 1.5),
                                flip="horizontal")
    runs = []
    for _ in range(2):
        np.random.seed(7)
        runs.append([mapper(nyu_record) for _ in range(4)])
    for a, b in zip(*runs):
        for key in ("image", "sem_seg", "depth", "normal"):
            assert torch.equal(a[key], b[key])
    assert any(not torch.equal(runs[0][0]["image"], out["image"]) for out in runs[0][1:])


def test_test_mode_ignores_random_scale_and_flip(nyu_record):
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.INPUT.DENSE.SIZE = [12, 16]
    cfg.INPUT.DENSE.RANDOM_SCALE = [1.5]
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    test = DenseDatasetMapper(cfg, is_train=False)
    outs = []
    for seed in range(4):
        np.random.seed(seed)
        outs.append(test(nyu_record))
    assert all(torch.equal(o["image"], outs[0]["image"]) for o in outs)
    assert outs[0]["image"].shape == (3, 12, 16)
    train = DenseDatasetMapper(cfg, is_train=True)
    assert (train.size, train.scales, train.flip) == ((12, 16), (1.5,), "horizontal")


@pytest.mark.parametrize("key, value", [("INPUT.DENSE.SIZE", [10]), ("INPUT.DENSE.RANDOM_SCALE", [0.5, 1.0])])
def test_bad_mapper_config_names_the_key(key, value):
    cfg = dense_cfg()
    cfg.merge_from_list([key, value])
    with pytest.raises(STAConfigError, match=key):
        validate_sta_config(cfg)


def test_a_flip_the_mapper_cannot_do_names_the_key():
    cfg = get_cfg()
    add_sta_config(cfg)
    cfg.INPUT.RANDOM_FLIP = "diagonal"
    with pytest.raises(STAConfigError, match="INPUT.RANDOM_FLIP"):
        DenseDatasetMapper(cfg, is_train=True)


# ---------------------------------------------------------------- bad input


def test_missing_or_orphan_targets_are_named(copy_of):
    split = copy_of("nyuv2") / "train"
    (split / "depth" / "1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(split / "depth" / "1.npy"))):
        load_nyuv2_13(str(split))
    shutil.copy(split / "depth" / "0.npy", split / "depth" / "1.npy")
    (split / "image" / "2.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"image .*2\.npy of .*label.2\.npy is missing"):
        load_nyuv2_13(str(split))
    shutil.rmtree(split / "normal")
    with pytest.raises(FileNotFoundError, match=re.escape(str(split / "normal")) + ".*README"):
        load_nyuv2_13(str(split))


@pytest.mark.parametrize("sub, array, match", [
    ("label", np.zeros((5, 7), np.float32), r"label.0\.npy: sem_seg target of size \(5, 7\)"),
    ("label", np.full(SIZE, 0.5, np.float32), r"label.0\.npy: label map holds non-integer"),
    ("label", np.full(SIZE, 13, np.int64), r"label.0\.npy: label value 13 outside -1..12"),
    ("image", np.zeros((*SIZE, 3), np.uint8), r"image.0\.npy: image of dtype uint8"),
    ("depth", np.zeros((*SIZE, 2), np.float32), r"depth.0\.npy: depth of dtype float32 and shape"),
    ("normal", np.full((*SIZE, 3), 2.0, np.float32), r"normal.0\.npy: normal components up to 2"),
])
def test_bad_file_contents_name_the_file(copy_of, sub, array, match):
    split = copy_of("nyuv2") / "val"
    np.save(split / sub / "0.npy", array)
    record = load_nyuv2_13(str(split))[0]
    with pytest.raises(ValueError, match=match):
        DenseDatasetMapper(is_train=False)(record)


def test_nyud_mt_missing_split_file_or_image_is_named(copy_of):
    root = copy_of("NYUD_MT")
    image_id = (root / "gt_sets" / "train.txt").read_text().split()[1]
    (root / "depth" / f"{image_id}.npy").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{image_id}.npy") + ".*train.txt"):
        load_nyud_mt(str(root), "train")
    (root / "gt_sets" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "gt_sets" / "val.txt"))):
        load_nyud_mt(str(root), "val")


def test_cityscapes_missing_disparity_and_orphans_are_named(copy_of):
    root = copy_of("cityscapes")
    (disparity,) = (root / "disparity" / "val" / "frankfurt").iterdir()
    moved = disparity.with_name("frankfurt_000009_000019_disparity.png")
    disparity.rename(moved)
    with pytest.raises(FileNotFoundError, match=re.escape(str(disparity)) + " of .* is missing"):
        load_cityscapes_depth_seg(str(root), "val")
    shutil.copy(moved, disparity)
    with pytest.raises(FileNotFoundError, match="frankfurt_000009_000019_leftImg8bit.png of "
                                                + re.escape(str(moved))):
        load_cityscapes_depth_seg(str(root), "val")
    shutil.rmtree(root / "disparity" / "train")
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "disparity" / "train"))):
        load_cityscapes_depth_seg(str(root), "train")


def test_cityscapes_8bit_disparity_is_rejected(copy_of):
    root = copy_of("cityscapes")
    record = load_cityscapes_depth_seg(str(root), "val")[0]
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(record["disparity_file_name"])
    with pytest.raises(ValueError, match=re.escape(record["disparity_file_name"]) + ".*16-bit"):
        DenseDatasetMapper(is_train=False)(record)


def test_cli_writes_the_dense_layouts(tmp_path):
    main(["nyuv2_13", "--root", str(tmp_path / "nyuv2"), "--num-train", "1", "--num-val", "1",
          "--image-size", "12", "16"])
    assert np.load(tmp_path / "nyuv2" / "val" / "image" / "0.npy").shape == (12, 16, 3)
    main(["cityscapes_npy", "--root", str(tmp_path / "cs"), "--num-train", "1", "--num-val", "0"])
    assert np.load(tmp_path / "cs" / "train" / "depth" / "0.npy").shape == (64, 128, 1)
    assert NYU_40_TO_13[1] == 12 and NYU_40_TO_13[22] == 3  # wall -> wall, ceiling -> ceiling


def test_bgr_format_reverses_the_channels(nyu_record):
    rgb = DenseDatasetMapper(is_train=False)(nyu_record)
    bgr = DenseDatasetMapper(is_train=False, image_format="BGR")(nyu_record)
    assert torch.equal(bgr["image"], rgb["image"].flip(0))
    assert torch.equal(bgr["sem_seg"], rgb["sem_seg"])
