"""datasets/prepare_nyuv2.py on a small generated copy of the official NYUv2 release."""
import importlib.util
import os

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from sta_d2.data import DenseDatasetMapper
from sta_d2.data.datasets import load_nyud_mt, load_nyuv2_13
from sta_d2.data.synthetic import NYU_40_TO_13, generate_nyuv2_mat, nyud_mt_id

SIZE = (30, 40)  # H, W of the generated .mat
MTAN_SIZE = (15, 20)


def _load_script():
    path = os.path.join(os.path.dirname(__file__), "..", "datasets", "prepare_nyuv2.py")
    spec = importlib.util.spec_from_file_location("prepare_nyuv2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = _load_script()


def _args(raw, out, **override):
    files = {"mat": "nyu_depth_v2_labeled.mat", "splits": "splits.mat",
             "mapping40": "classMapping40.mat", "mapping13": "class13Mapping.mat"}
    args = []
    for option, name in files.items():
        args += [f"--{option}", override.get(option, str(raw / name))]
    return args + ["--out-dir", str(out), "--mtan-size", *map(str, MTAN_SIZE)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    generate_nyuv2_mat(str(raw), 3, 2, image_size=SIZE, seed=5)
    with h5py.File(raw / "nyu_depth_v2_labeled.mat", "r+") as f:  # hand-set pixels of image 1
        f["labels"][0, 5, 3] = 0  # (row 3, column 5): unlabelled
        f["labels"][0, 6, 3] = 7  # raw class 7
    out = tmp_path_factory.mktemp("out")
    prepare.main(_args(raw, out))
    return raw, out


def test_generated_mat_has_the_official_layout(converted):
    raw, _ = converted
    with h5py.File(raw / "nyu_depth_v2_labeled.mat", "r") as f:
        assert f["images"].shape == (5, 3, SIZE[1], SIZE[0]) and f["images"].dtype == np.uint8
        assert f["depths"].shape == f["labels"].shape == (5, SIZE[1], SIZE[0])
        assert f["labels"].dtype == np.uint16 and f["labels"][()].max() <= 894
    assert (raw / "nyu_depth_v2_labeled.mat").read_bytes().startswith(b"MATLAB 7.3 MAT-file")
    splits = scipy.io.loadmat(raw / "splits.mat")
    assert splits["trainNdxs"].shape == (3, 1) and splits["testNdxs"].shape == (2, 1)
    indices = np.concatenate([splits["trainNdxs"], splits["testNdxs"]]).ravel()
    assert sorted(indices) == [1, 2, 3, 4, 5]
    mapping40 = scipy.io.loadmat(raw / "classMapping40.mat")
    assert mapping40["mapClass"].shape == (1, 894) and mapping40["className"][0][0][0] == "wall"
    struct = scipy.io.loadmat(raw / "class13Mapping.mat")["classMapping13"][0][0]
    assert list(struct[0][0]) == list(NYU_40_TO_13[1:]) and struct[1][0][0][0] == "bed"


def test_both_layouts_hold_the_mapped_classes(converted):
    raw, out = converted
    splits = scipy.io.loadmat(raw / "splits.mat")
    to40 = scipy.io.loadmat(raw / "classMapping40.mat")["mapClass"][0].astype(np.int64)
    with h5py.File(raw / "nyu_depth_v2_labeled.mat", "r") as f:
        labels, depths, images = f["labels"][()], f["depths"][()], f["images"][()]
    for split, key in (("train", "trainNdxs"), ("val", "testNdxs")):
        indices = splits[key].ravel().astype(int)
        nyud = load_nyud_mt(str(out / "NYUD_MT"), split)
        assert [r["image_id"] for r in nyud] == [nyud_mt_id(k) for k in indices]
        mtan = load_nyuv2_13(str(out / "nyuv2" / split))
        assert len(mtan) == len(indices)
        for k, nyud_record, mtan_record in zip(indices, nyud, mtan):
            raw_labels = labels[k - 1].T.astype(np.int64)  # (H, W)
            label40 = np.where(raw_labels > 0, to40[raw_labels - 1], 0)
            png = np.asarray(Image.open(nyud_record["sem_seg_file_name"]))
            np.testing.assert_array_equal(png, label40)
            np.testing.assert_array_equal(np.load(nyud_record["depth_file_name"]), depths[k - 1].T)
            rgb = np.asarray(Image.open(nyud_record["file_name"]), dtype=float)
            assert np.abs(rgb - images[k - 1].transpose(2, 1, 0)).mean() < 8  # JPEG
            if k == 1:  # the hand-set pixels: unlabelled -> ignore, raw class 7 -> its classes
                c40 = to40[6]
                assert (png[3, 5], png[3, 6]) == (0, c40)
                sem_seg = DenseDatasetMapper(is_train=False)(nyud_record)["sem_seg"]
                assert (sem_seg[3, 5].item(), sem_seg[3, 6].item()) == (255, c40 - 1)
            label13 = np.load(mtan_record["sem_seg_file_name"])
            assert label13.shape == MTAN_SIZE
            # mtan's labels are the 13 classes of the nearest .mat pixel, 0-based, -1 unlabelled
            rows = ((np.arange(MTAN_SIZE[0]) + 0.5) * SIZE[0] / MTAN_SIZE[0]).astype(int)
            cols = ((np.arange(MTAN_SIZE[1]) + 0.5) * SIZE[1] / MTAN_SIZE[1]).astype(int)
            expected = np.asarray(NYU_40_TO_13)[label40[rows][:, cols]] - 1
            np.testing.assert_array_equal(label13, expected)
            assert -1 in label13 and (label13 >= 0).any()


def test_normals_follow_the_room_geometry(converted):
    _, out = converted
    mapper = DenseDatasetMapper(is_train=False)
    outputs = [mapper(r) for r in load_nyud_mt(str(out / "NYUD_MT"), "train")]
    normal = torch.cat([o["normal"].flatten(1) for o in outputs], dim=1)
    sem_seg = torch.cat([o["sem_seg"].flatten() for o in outputs])
    floor = normal[:, sem_seg == 1]  # 40-class "floor" (id 2), 0-based
    # camera frame x right, y down, z forward; normals face the camera: the floor's point up
    assert floor.shape[1] > 10 and (floor[1] < -0.99).float().mean() > 0.8
    wall = normal[:, sem_seg == 0]  # walls are axis-aligned
    assert (wall.abs().max(dim=0).values > 0.99).float().mean() > 0.8
    mtan = load_nyuv2_13(str(out / "nyuv2" / "train"))[0]
    n = np.load(mtan["normal_file_name"])
    norms = np.linalg.norm(n, axis=2)
    assert n.shape == (*MTAN_SIZE, 3) and np.allclose(norms[norms > 0], 1, atol=1e-5)


@pytest.mark.parametrize("option", ["mat", "splits", "mapping40", "mapping13"])
def test_missing_inputs_are_named(converted, tmp_path, capsys, option):
    raw, _ = converted
    missing = str(tmp_path / "nowhere.mat")
    with pytest.raises(SystemExit):
        prepare.main(_args(raw, tmp_path / "out", **{option: missing}))
    assert f"--{option}: input file {missing} does not exist" in capsys.readouterr().err


def test_bad_inputs_are_named(converted, tmp_path):
    raw, out = converted
    with pytest.raises(FileExistsError, match=str(out / "nyuv2")):
        prepare.main(_args(raw, out))
    scipy.io.savemat(tmp_path / "splits.mat", {"train": np.ones((1, 1))})
    with pytest.raises(ValueError, match=r"splits.mat: no variable 'trainNdxs'"):
        prepare.main(_args(raw, tmp_path / "a", splits=str(tmp_path / "splits.mat")))
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": [[1], [9]], "testNdxs": [[2]]})
    with pytest.raises(ValueError, match=r"splits.mat: index 9 is outside the 5 images"):
        prepare.main(_args(raw, tmp_path / "b", splits=str(tmp_path / "splits.mat")))
    (tmp_path / "bad.mat").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"bad.mat: not an HDF5"):
        prepare.main(_args(raw, tmp_path / "c", mat=str(tmp_path / "bad.mat")))
