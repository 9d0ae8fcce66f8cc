"""The claim protocols (tools/check_claims.py): corrupted-label datasets, detection scores, and the
three protocols end to end in their --smoke size."""
import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest

from sta_d2.reproduction import claim_data, claims
from sta_d2.weighting.iltp import InstanceLevelTaskParameters

CONFIGS = str(Path(__file__).resolve().parent.parent / "configs")


def test_auc_and_precision_at_k():
    positive = [True, False, True, False, False]
    assert claim_data.auc([0.9, 0.1, 0.8, 0.2, 0.3], positive) == 1.0
    assert claim_data.auc([0.1, 0.9, 0.2, 0.8, 0.7], positive) == 0.0
    assert claim_data.auc([1, 1, 1, 1, 1], positive) == 0.5
    assert claim_data.auc([0.9, 0.5, 0.4, 0.6, 0.1], positive) == pytest.approx(4 / 6)
    assert claim_data.precision_at_k([0.9, 0.5, 0.4, 0.6, 0.1], positive) == 0.5
    assert math.isnan(claim_data.auc([1, 2], [False, False]))
    assert math.isnan(claim_data.precision_at_k([1, 2], [False, False]))


def test_corrupted_copy_replaces_exactly_the_listed_labels(tmp_path):
    clean = claim_data.generate(str(tmp_path), 6, 2, (24, 32))
    out = claim_data.corrupted_copy(clean, str(tmp_path / "noisy"), "depth", [1, 4], seed=0)
    assert np.loadtxt(os.path.join(out, "corrupted_depth.txt"), dtype=int).tolist() == [1, 4]
    for i in range(6):
        before = np.load(os.path.join(clean, "train", "depth", f"{i}.npy"))
        after = np.load(os.path.join(out, "train", "depth", f"{i}.npy"))
        assert after.shape == before.shape and np.array_equal(after > 0, before > 0)
        assert np.array_equal(after, before) == (i not in (1, 4))
        assert np.array_equal(np.load(os.path.join(out, "train", "label", f"{i}.npy")),
                              np.load(os.path.join(clean, "train", "label", f"{i}.npy")))
    normals = claim_data.noise_like(np.load(os.path.join(clean, "train", "normal", "0.npy")), "normal",
                                    np.random.default_rng(0))
    norms = np.linalg.norm(normals, axis=-1)
    assert np.allclose(norms[norms > 0], 1, atol=1e-5) and (norms == 0).any()
    with pytest.raises(ValueError, match="'edges'"):
        claim_data.corrupted_copy(clean, str(tmp_path / "bad"), "edges", [0], seed=0)


def _rows(results):
    return [(r["setting"], r["method"]) for r in results]


def test_protocols_run_in_smoke_size(tmp_path):
    size = claims.SMOKE
    for method, protocol in claims.PROTOCOLS.items():
        output = str(tmp_path / method)
        results = claims.run(method, CONFIGS, output, size, [0], log=lambda _: None)
        expected = [(r.setting, r.method) for r in protocol.rows(size)]
        assert _rows(results) == expected
        for r in results:
            assert all(math.isfinite(r[key]) for _, key, _ in protocol.metrics), r
        table = claims.markdown(method, results, size, "provenance")
        assert [line.split(" | ")[:2] for line in table.splitlines()[2:2 + len(expected)]] == \
            [[f"| {s}", m] for s, m in expected]
        if method != "iltp":
            continue
        # detection is scored against the corrupted list written next to the data
        [fraction] = size.fractions
        folder = os.path.join(output, "datasets", f"depth{fraction:g}_seed0", "nyuv2")
        corrupted = np.loadtxt(os.path.join(folder, "corrupted_depth.txt"), dtype=int, ndmin=1).tolist()
        assert len(corrupted) == round(fraction * size.num_train)
        by_method = {r["method"]: r for r in results}
        baseline = by_method["equal"]
        assert 0 <= baseline["per-image error AUC"] <= 1 and 0 <= baseline["per-image error P@k"] <= 1
        for name in ("ILTP", "ILTP, per-task normalised"):
            setting = claims._slug(by_method[name]["setting"])
            run_dir = os.path.join(output, "runs", setting, claims._slug(name), "seed0")
            with open(os.path.join(run_dir, InstanceLevelTaskParameters.EXPORT_FILE)) as f:
                rows = list(csv.DictReader(f))
            assert len(rows) == size.num_train
            scores = [float(r["log_var/depth"]) for r in rows]
            positive = [claims.image_number(r["file_name"]) in corrupted for r in rows]
            assert by_method[name]["s AUC"] == pytest.approx(claim_data.auc(scores, positive))
            assert "per-image error AUC" not in by_method[name]
        # a finished run is read back, not trained again
        again = claims.run(method, CONFIGS, output, size, [0], log=pytest.fail)
        assert again == results
