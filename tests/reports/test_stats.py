"""Statistics behind the report, on real Fashion-MNIST pixels and known-answer cases."""

from __future__ import annotations

import numpy as np
import pytest

from linprobe.reports import stats
from linprobe.schema import Predictions
from linprobe.reports.gallery import error_gallery, thumbnail_uri
from tests.reports.realruns import demo_pixels


@pytest.fixture(scope="module")
def pixels() -> tuple[np.ndarray, np.ndarray]:
    images, labels = demo_pixels(60, [0, 1, 7])  # T-shirt, Trouser, Sneaker
    return images.reshape(len(images), -1).astype(np.float64) / 255.0, labels


def test_mmd_same_distribution_vs_shifted(pixels):
    x, y = pixels
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    same = stats.mmd_test(x[order[:90]], x[order[90:]], n_perm=100)
    assert same["p_value"] > 0.05
    assert abs(same["mmd2"]) < 0.01
    # Train on T-shirts+Trousers, "test" on Sneakers: a real domain shift.
    shifted = stats.mmd_test(x[y != 7], x[y == 7], n_perm=100)
    assert shifted["p_value"] < 0.02
    assert shifted["mmd2"] > 10 * abs(same["mmd2"])
    assert shifted["bandwidth"] > 0


def test_mmd_rejects_bad_shapes():
    with pytest.raises(ValueError, match="equal D"):
        stats.mmd_test(np.zeros((5, 3)), np.zeros((5, 4)))


def test_pca_and_confused_pairs(pixels):
    x, y = pixels
    z, ratio = stats.pca_2d(x)
    assert z.shape == (len(x), 2) and 0 < sum(ratio) <= 1
    cm = np.array([[8, 2, 0], [0, 10, 0], [5, 0, 5]])
    pairs = stats.top_confused_pairs(cm, ["a", "b", "c"], k=5)
    assert [(p["actual"], p["predicted"], p["count"]) for p in pairs] == [("c", "a", 5), ("a", "b", 2)]
    assert pairs[0]["rate"] == 0.5
    assert np.allclose(stats.normalise_rows(cm).sum(axis=1), 1)


def test_gallery_orders_mistakes_and_refuses_escaping_ids(tmp_path):
    from PIL import Image

    images, _ = demo_pixels(1, [0])
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    (tmp_path / "root").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "root" / "b.png")
    preds = Predictions(ids=np.array(["b.png", "../a.png", "missing.png"], dtype=object),
                        actual=np.array(["x", "x", "y"], dtype=object),
                        predicted=np.array(["y", "y", "y"], dtype=object),
                        score=np.array([0.6, 0.9, 0.99]))
    items = error_gallery(preds, "multiclass", str(tmp_path / "root"))
    assert [i["id"] for i in items] == ["../a.png", "b.png"]  # most confident mistake first
    assert items[0]["thumb"] is None  # outside the data root: not read
    assert items[1]["thumb"].startswith("data:image/png;base64,")
    assert thumbnail_uri(str(tmp_path / "root"), "missing.png") is None


def test_mmd2_matches_the_textbook_unbiased_estimate(pixels):
    x, _ = pixels
    a, b = x[:40], x[100:130]
    res = stats.mmd_test(a, b, n_perm=10)
    g = 1.0 / (2 * res["bandwidth"] ** 2)
    kern = lambda u, v: np.exp(-g * ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1))  # noqa: E731
    kxx, kyy, kxy = kern(a, a), kern(b, b), kern(a, b)
    m, n = len(a), len(b)
    expected = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                - 2 * kxy.mean())
    assert res["mmd2"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
