"""Evaluation example figures: a fixed reflectance stretch, cubes chosen to show errors, labelled panels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoseg.features import get_recipe
from geoseg.train.examples import choose_examples, count_for, example_title, pixel_accuracy
from geoseg.train.plots import INVALID_RGB, NATURAL_COLOUR_RANGE, rgb_composite

RECIPE = get_recipe("s2_24")
NAMES = list(RECIPE.channel_names)
FOREST = {"B02": 0.024, "B03": 0.046, "B04": 0.024}  # the demo's forest spectrum (B04, B03, B02)


def _cube(rgb_by_pixel: np.ndarray) -> np.ndarray:
    """An s2_24 cube (C, H, W) whose B04/B03/B02 are ``rgb_by_pixel`` (3, H, W); other reflectances 0.1."""
    cube = np.zeros((RECIPE.num_channels, *rgb_by_pixel.shape[1:]), np.float32)
    cube[: RECIPE.num_mask_channels] = 0.1
    for band, plane in zip(("B04", "B03", "B02"), rgb_by_pixel, strict=True):
        cube[NAMES.index(band)] = plane
    return cube


def _uniform(values: dict[str, float], size: int = 16) -> np.ndarray:
    return _cube(np.stack([np.full((size, size), values[b], np.float32) for b in ("B04", "B03", "B02")]))


def _expected(values: dict[str, float]) -> tuple[int, ...]:
    lo, hi = NATURAL_COLOUR_RANGE  # of the float32 values the cube holds
    return tuple(int(np.round((float(np.float32(values[b])) - lo) / (hi - lo) * 255)) for b in ("B04", "B03", "B02"))


# ------------------------------------------------------------------------------------ the fixed stretch
def test_uniform_cube_renders_one_colour_raw_or_normalised():
    cube = _uniform(FOREST)
    mean, std = np.linspace(0.05, 0.2, len(NAMES)), np.linspace(0.02, 0.1, len(NAMES))
    normalised = ((cube - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
    for rgb in (rgb_composite(cube, NAMES), rgb_composite(normalised, NAMES, mean, std)):
        colours = np.unique(rgb.reshape(-1, 3), axis=0)
        assert [tuple(c) for c in colours] == [_expected(FOREST)], colours  # dark green, not rainbow noise
    # a per-cube stretch would blow sensor noise up to the full range; the fixed one keeps it within a level
    noisy = _uniform(FOREST) + np.random.default_rng(0).normal(0, 0.0003, (RECIPE.num_channels, 16, 16)).astype(
        np.float32)
    spread = rgb_composite(noisy, NAMES).reshape(-1, 3).astype(int)
    assert (spread.max(0) - spread.min(0)).max() <= 2


def test_same_reflectance_same_colour_in_two_cubes_and_invalid_pixels_are_grey():
    water, bare = {"B02": 0.052, "B03": 0.046, "B04": 0.030}, {"B02": 0.12, "B03": 0.16, "B04": 0.22}
    dark, bright = _uniform(water, 8), _uniform(bare, 8)
    for cube in (dark, bright):  # one forest pixel in each
        for band, value in FOREST.items():
            cube[NAMES.index(band), 3, 3] = value
    bright[:, 0, 0] = 0  # an invalid pixel: 0 in every channel
    rgb_dark, rgb_bright = rgb_composite(dark, NAMES), rgb_composite(bright, NAMES)
    assert tuple(rgb_dark[3, 3]) == tuple(rgb_bright[3, 3]) == _expected(FOREST)
    assert tuple(rgb_dark[0, 0]) == _expected(water) and tuple(rgb_bright[1, 1]) == _expected(bare)
    assert tuple(rgb_bright[0, 0]) == INVALID_RGB
    assert tuple(rgb_composite(_uniform({"B02": 0.5, "B03": 0.6, "B04": 0.9}, 2), NAMES)[0, 0]) == (255, 255, 255)
    with pytest.raises(ValueError, match="B04"):
        rgb_composite(dark[:2], ["B08", "B11"])


# ------------------------------------------------------------------------------------ which cubes
CLASSES = ["water", "forest", "cropland", "built-up"]


def _tally() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 cubes of 100 labelled pixels: cube 7 is the worst, cube 9 has 2 labelled pixels, both wrong."""
    labelled = np.full(12, 100)
    labelled[9] = 2
    correct = np.array([95, 90, 99, 80, 97, 92, 91, 40, 88, 0, 96, 93])
    class_pixels = np.zeros((12, 4), np.int64)
    class_pixels[:, 2] = 60  # cropland everywhere
    class_pixels[:, 1] = np.arange(12)  # forest: most in cube 11
    class_pixels[4, 0] = 30  # water: cube 4 only
    class_pixels[7, 0] = 10
    return labelled, correct, class_pixels  # built-up: absent


def test_selection_takes_the_worst_cube_and_one_cube_per_class_then_random():
    labelled, correct, class_pixels = _tally()
    chosen, left_out = choose_examples(labelled, correct, class_pixels, CLASSES, 6)
    reasons = {e.position: e.reasons for e in chosen}
    assert len(chosen) == len(reasons) == 6 and left_out == []  # bounded, no cube twice
    assert chosen[0].position == 7 and reasons[7] == ("largest error",)  # not cube 9 (2 pixels)
    assert reasons[4] == ("class: water",) and reasons[11] == ("class: forest",)  # rarest first
    cropland = [p for p, r in reasons.items() if "class: cropland" in r]
    assert cropland == [0] and reasons[0] == ("class: cropland",)  # tie: first cube
    assert not any("built-up" in r for rs in reasons.values() for r in rs)  # absent from the ground truth
    assert [r for r in reasons.values() if r == ("random",)] == [("random",)] * 2  # 6 // 4 = 1, + the unused slot
    # reproducible draws; another seed draws others
    again, _ = choose_examples(labelled, correct, class_pixels, CLASSES, 6)
    assert again == chosen
    draws = {tuple(e.position for e in choose_examples(labelled, correct, class_pixels, CLASSES, 6, seed=s)[0])
             for s in range(5)}
    assert len(draws) > 1


def test_selection_merges_reasons_and_reports_classes_without_room():
    labelled, correct, class_pixels = _tally()
    class_pixels[7, 0] = 50  # the worst cube is also where water is most present
    chosen, left_out = choose_examples(labelled, correct, class_pixels, CLASSES, 6)
    assert chosen[0].position == 7 and chosen[0].reasons == ("largest error", "class: water")
    assert len({e.position for e in chosen}) == 6
    small, left_out = choose_examples(labelled, correct, class_pixels, CLASSES, 2)
    assert [e.reasons for e in small] == [("largest error", "class: water"), ("class: forest",)]
    assert left_out == ["cropland"]
    enough = count_for(2 - 2 // 4 + len(left_out))  # the count evaluate suggests
    assert choose_examples(labelled, correct, class_pixels, CLASSES, enough)[1] == []
    assert [count_for(t) for t in (1, 3, 4, 7)] == [1, 3, 5, 9]
    assert choose_examples(labelled, correct, class_pixels, CLASSES, 0) == ([], [])
    assert len(choose_examples(labelled[:3], correct[:3], class_pixels[:3], CLASSES, 8)[0]) == 3


def test_label_names_cube_split_accuracy_and_reason():
    truth = np.array([[0, 1], [1, 255]], np.uint8)
    accuracy = pixel_accuracy(truth, np.array([[0, 1], [0, 1]]))
    assert accuracy == pytest.approx(2 / 3)
    title = example_title(42, "test", accuracy, ["largest error", "class: forest"])
    assert title == "cube 42 · test · pixel accuracy 66.7 % · largest error, class: forest"
    assert "no labelled pixel" in example_title(3, "val", pixel_accuracy(np.full((2, 2), 255), np.zeros((2, 2))),
                                                ["random"])


# ------------------------------------------------------------------------------------ end to end
def _cube_accuracies(bundle_dir: Path, store_dir: Path, split: str) -> tuple[np.ndarray, ...]:
    """Cube ids, labelled pixels, correct pixels and pixels per class of each cube, computed here with the
    predictor's runner."""
    from geoseg.bundle import ModelRunner, load_bundle
    from geoseg.tiling.store import CubeStore

    store = CubeStore.open(store_dir)
    ids = store.ids(split)
    pred = ModelRunner(load_bundle(bundle_dir), "cpu", fp16=False)(store.read_cubes(ids)).argmax(1)
    truth = store.read_labels(ids)
    labelled = (truth != 255).sum((1, 2))
    per_class = np.stack([(truth == c).sum((1, 2)) for c in range(len(store.classes))], axis=1)
    return ids, labelled, ((pred == truth) & (truth != 255)).sum((1, 2)), per_class


def test_evaluate_draws_labelled_figures_of_the_worst_cube_and_each_class(demo_cubes: Path, tmp_path: Path):
    from PIL import Image

    from geoseg.train import evaluate
    from tests.predict._predict_helpers import unet_bundle

    bundle = unet_bundle(tmp_path / "best")
    result = evaluate(bundle, demo_cubes, tmp_path / "eval", split="train", save_examples=9, num_workers=0,
                      batch_size=8)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    examples = metrics["examples"]
    pngs = sorted((tmp_path / "eval" / "examples").glob("*.png"))
    assert len(pngs) == len(examples) == len(result.examples) == 9
    assert [e["file"] for e in examples] == [f"examples/example_{n}.png" for n in range(9)]
    assert len({e["cube_id"] for e in examples}) == 9

    ids, labelled, correct, per_class = _cube_accuracies(bundle, demo_cubes, "train")
    error = np.where(labelled >= 0.1 * labelled.max(), 1 - correct / np.maximum(labelled, 1), -1)
    worst = np.lexsort((-labelled, -error))[0]  # ties: the cube with more labelled pixels
    assert examples[0]["reasons"][0] == "largest error" and examples[0]["cube_id"] == int(ids[worst])
    accuracy = dict(zip(ids.tolist(), (correct / np.maximum(labelled, 1)).tolist(), strict=True))
    present = [name for name, scores in metrics["per_class"].items() if scores["support"] > 0]
    reasons = [r for e in examples for r in e["reasons"]]
    assert len(present) >= 4 and {f"class: {name}" for name in present} <= set(reasons)  # every class shown
    assert reasons.count("largest error") == 1 and "random" in reasons
    position = {int(cube_id): p for p, cube_id in enumerate(ids)}
    for entry in examples:  # a class's cube is the one where it covers the most pixels
        for reason in entry["reasons"]:
            if reason.startswith("class: "):
                c = metrics["per_class"][reason.removeprefix("class: ")]["index"]
                assert per_class[position[entry["cube_id"]], c] == per_class[:, c].max()
    for entry in examples:
        assert entry["pixel_accuracy"] == pytest.approx(accuracy[entry["cube_id"]], abs=1e-3)
        title = Image.open(tmp_path / "eval" / entry["file"]).text["Title"]  # the label drawn above the panels
        assert title == example_title(entry["cube_id"], "train", entry["pixel_accuracy"], entry["reasons"])
        assert f"cube {entry['cube_id']} · train · pixel accuracy " in title
