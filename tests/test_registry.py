"""The registry: one entry per published model, and everything else agreeing with it."""

import dataclasses
from pathlib import Path

import pytest

import larq_bnext
from larq_bnext import registry

ROOT = Path(__file__).resolve().parents[1]

# Independent expectations: the BNext paper's Table (top-1) and the authors' README (shares).
PUBLISHED = {
    "tiny": (72.4, "https://owncloud.hpi.de/s/jKjwDk35vVRPQN0"),
    "small": (76.1, "https://owncloud.hpi.de/s/bHLM7lqfzm58kIW"),
    "middle": (78.3, "https://owncloud.hpi.de/s/jU5m9v4ADsJKZsa"),
    "large": (80.57, "https://owncloud.hpi.de/s/zQHrlxiQ6XbjCbz"),
}


def test_list_models_holds_the_four_published_sizes_in_order():
    assert [m.name for m in registry.list_models("bnext")] == ["tiny", "small", "middle", "large"]
    assert [m.name for m in registry.list_models()] == [
        "tiny",
        "small",
        "middle",
        "large",
        "bnext18",
    ]
    assert larq_bnext.list_models() == registry.list_models()
    for info in registry.list_models("bnext"):
        top1, share = PUBLISHED[info.name]
        assert info.top1 == top1
        assert info.url == share + "/download"
        assert info.sha256 is None
        assert info.preprocessing.crop_fraction == 0.95
        assert info.preprocessing.interpolation == "bicubic"


@pytest.mark.parametrize(
    "alias, name",
    [("T", "tiny"), ("bnext_small", "small"), ("BNext-M", "middle"), ("medium", "middle"),
     (" L ", "large"), ("bnextl", "large")],
)  # fmt: skip
def test_aliases_resolve(alias, name):
    assert registry.get(alias).name == name


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown BNext size 'huge'") as info:
        registry.get("huge")
    assert "tiny" in str(info.value) and "bnext_large" in str(info.value)


def test_bnext18_entry_has_no_checkpoint_and_bnext_ts_recipe():
    info = registry.get("BNext-18")
    assert info is registry.get("bnext_18") and info.family == "bnext18"
    assert info.model_name == "bnext18" and info.display_name == "BNext-18"
    assert info.top1 is None and not info.published
    with pytest.raises(ValueError, match="No official ImageNet checkpoint of BNext-18"):
        _ = info.url
    assert info.recipe == registry.get("tiny").recipe  # no recipe is released for BNext-18
    # Stem, then four stages of two basic blocks (the original's BNext18).
    assert info.stage_channels == (64, 64, 64, 128, 128, 256, 256, 512, 512)
    with pytest.raises(ValueError, match="BNext18"):
        registry.canonical_size("bnext18")  # not a size of the BNext-T/S/M/L builder


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.get("tiny").top1 = 0.0


def test_stage_channels_double_or_repeat_and_count_blocks():
    # Block counts of the paper: 13 blocks for T and S, 21 for M, 29 for L.
    blocks = {"tiny": 13, "small": 13, "middle": 21, "large": 29}
    for info in registry.list_models("bnext"):
        ch = info.stage_channels
        assert len(ch) - 1 == blocks[info.name]
        assert all(b in (a, 2 * a) for a, b in zip(ch[1:], ch[2:], strict=False))
        strides = [s for *_, s, _ in registry.block_configs(ch)]
        assert strides.count(2) == 4


def test_sized_builders_read_the_registry_and_share_bnexts_signature():
    import inspect

    bnext = inspect.signature(larq_bnext.BNext).parameters
    for info in registry.list_models("bnext"):
        builder = getattr(larq_bnext, f"BNext{info.letter}")
        params = inspect.signature(builder).parameters
        assert set(params) == set(bnext) - {"stage_channels", "size"}
        assert params["name"].default == info.model_name
        assert str(info.stage_channels) in builder.__doc__


def _flag_file(path: Path) -> dict[str, str]:
    flags = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("--"):
            continue
        key, _, value = line[2:].partition("=")
        if not _:
            key, value = (key[2:], "false") if key.startswith("no") else (key, "true")
        flags[key] = value
    return flags


@pytest.mark.parametrize("info", registry.list_models(), ids=lambda m: m.name)
def test_experiment_flag_file_matches_its_registry_entry(info):
    flags = _flag_file(ROOT / "experiments" / f"{info.model_name}.flags")
    recipe, prep = info.recipe, info.preprocessing
    assert registry.get(flags["model"]) is info
    assert int(flags["batch_size"]) == recipe.batch_size
    assert int(flags["epochs"]) == recipe.epochs
    assert float(flags["lr"]) == recipe.lr
    assert tuple(flags["teachers"].split(",")) == recipe.teachers
    assert int(flags["image_size"]) == prep.image_size
    assert float(flags["eval_crop_fraction"]) == prep.crop_fraction


def test_preprocessing_constants_come_from_the_registry():
    prep = registry.IMAGENET_PREPROCESSING
    assert larq_bnext.preprocessing.IMAGENET_MEAN == prep.mean == (0.485, 0.456, 0.406)
    assert larq_bnext.preprocessing.IMAGENET_STD == prep.std == (0.229, 0.224, 0.225)
    assert larq_bnext.preprocessing.EVAL_CROP_FRACTION == prep.crop_fraction
