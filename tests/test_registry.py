"""The registry: one entry per published model, and everything else agreeing with it."""

import ast
import dataclasses
from pathlib import Path

import pytest

import larq_bnext
from larq_bnext import registry

ROOT = Path(__file__).resolve().parents[1]

# Independent expectations: the BNext paper's Table (top-1) and the history of the authors'
# README (git log -p -- README.md of github.com/hpi-xnor/BNext): its links, newest first.
PUBLISHED = {
    "tiny": (72.4, [
        "https://drive.google.com/file/d/1CJ0XOEhoHuNe-tDYJaAOd1j4YyNXuyas/view",
        "https://nextcloud.hpi.de/s/SZ6sYnyKEptMqRs",
        "https://nextcloud.hpi.de/s/zQCkteDoMbAeS25",
        "https://owncloud.hpi.de/s/jKjwDk35vVRPQN0",
    ]),
    "small": (76.1, [
        "https://drive.google.com/file/d/1NcVM5Qb1K9Oq_sjEA1lGtp7kVbsfTLsa/view",
        "https://nextcloud.hpi.de/s/nDpxpgmt7T4g8N9",
        "https://nextcloud.hpi.de/s/tCk25K3xdKCELNK",
        "https://owncloud.hpi.de/s/bHLM7lqfzm58kIW",
    ]),
    "middle": (78.3, [
        "https://drive.google.com/file/d/1xyKnA6SsG4ZpguNQQrB6Yz-J5dzXYfKE/view",
        "https://nextcloud.hpi.de/s/skBPSk4ADt8T4FK",
        "https://nextcloud.hpi.de/s/Wmq82dw5GMBzW4g",
        "https://owncloud.hpi.de/s/jU5m9v4ADsJKZsa",
    ]),
    "large": (80.57, [
        "https://drive.google.com/file/d/1XGKcX2Zl_fIU9wPBDjTTxstOBfwQH8xc/view",
        "https://nextcloud.hpi.de/s/Ggg4oet9ij6AzzG",
        "https://nextcloud.hpi.de/s/AA3eb7L38myLjtw",
        "https://owncloud.hpi.de/s/zQHrlxiQ6XbjCbz",
    ]),
}  # fmt: skip
#: (kind, README commit, date it appeared, date it was replaced) of each link, in that order.
PUBLICATIONS = [
    ("google-drive", "0f7d2e2", "2023-01-14", None),
    ("share", "2ed8e41", "2023-01-08", "2023-01-14"),
    ("share", "ab5a175", "2022-12-07", "2023-01-08"),
    ("share", "7189a4a", "2022-12-01", "2022-12-07"),
]


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
        top1, links = PUBLISHED[info.name]
        assert info.top1 == top1
        assert [s.url for s in info.sources] == links
        assert [(s.kind, s.commit, s.published, s.replaced) for s in info.sources] == PUBLICATIONS
        assert info.url == links[0]  # the authors' current link
        assert info.sha256 is None
        assert info.preprocessing.crop_fraction == 0.95
        assert info.preprocessing.interpolation == "bicubic"


def test_the_docs_table_of_sources_is_the_registry_s():
    rows = {}
    for line in (ROOT / "docs" / "pretrained.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():  # | # | host | date (`commit`) | ...
            rows[cells[2][:10]] = (cells[2].split("`")[1], [c.strip("`") for c in cells[4:]])
    for column, info in enumerate(registry.list_models("bnext")):
        for source in info.sources:
            commit, ids = rows[source.published]
            assert commit == source.commit
            assert source.url.rstrip("/").removesuffix("/view").endswith("/" + ids[column])


@pytest.mark.parametrize(
    "alias, name",
    [("T", "tiny"), ("bnext_small", "small"), ("BNext-M", "middle"), ("medium", "middle"),
     (" L ", "large"), ("bnextl", "large")],
)  # fmt: skip
def test_aliases_resolve(alias, name):
    assert registry.resolve_model(alias).name == name


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown BNext model 'huge'") as info:
        registry.resolve_model("huge")
    assert "tiny" in str(info.value) and "bnext_large" in str(info.value)
    assert "bnext18" in str(info.value)


def test_bnext18_entry_has_no_checkpoint_and_bnext_ts_recipe():
    info = registry.resolve_model("BNext-18")
    assert info is registry.resolve_model("bnext_18") and info.family == "bnext18"
    assert info.model_name == "bnext18" and info.display_name == "BNext-18"
    assert info.top1 is None and not info.published
    with pytest.raises(ValueError, match="No official ImageNet checkpoint of BNext-18"):
        _ = info.url
    assert (
        info.recipe == registry.resolve_model("tiny").recipe
    )  # no recipe is released for BNext-18
    # Stem, then four stages of two basic blocks (the original's BNext18).
    assert info.stage_channels == (64, 64, 64, 128, 128, 256, 256, 512, 512)
    with pytest.raises(ValueError, match="not a model of the 'bnext' family"):
        registry.resolve_model("bnext18", family="bnext")  # not a size of the BNext builder
    # BNext-18's kernels switch to sign(w) below 1e-5 (src/birealnet.py), the others' below 1e-7.
    assert info.architecture.sign_threshold == 1e-5
    assert {m.architecture.sign_threshold for m in registry.list_models("bnext")} == {1e-7}


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.resolve_model("tiny").top1 = 0.0


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
    """A flag file names its model and leaves the recipe to the registry entry."""
    from larq_bnext.training import RunConfig
    from larq_bnext.training.recipe import resolve

    flags = _flag_file(ROOT / "experiments" / f"{info.model_name}.flags")
    assert registry.resolve_model(flags["model"]) is info
    # Only what differs: the recipe's temperature factor pinned for runs shorter than its own.
    assert set(flags) == {"model", "dataset", "output_dir", "temperature_decay"}
    assert float(flags.pop("temperature_decay")) == info.recipe.temperature_decay
    run = resolve(RunConfig(**flags, data_dir="/data/imagenet"))
    recipe, prep = info.recipe, info.preprocessing
    assert (run.batch_size, run.epochs, run.lr) == (recipe.batch_size, recipe.epochs, recipe.lr)
    assert tuple(run.teachers.split(",")) == recipe.teachers
    assert run.distill_weighting == recipe.distill_weighting == "batch_mean"
    assert (run.image_size, run.eval_crop_fraction) == (prep.image_size, prep.crop_fraction)


def test_preprocessing_constants_come_from_the_registry():
    prep = registry.IMAGENET_PREPROCESSING
    assert larq_bnext.preprocessing.IMAGENET_MEAN == prep.mean == (0.485, 0.456, 0.406)
    assert larq_bnext.preprocessing.IMAGENET_STD == prep.std == (0.229, 0.224, 0.225)
    assert larq_bnext.preprocessing.EVAL_CROP_FRACTION == prep.crop_fraction


# ----------------------------------------------------------------------------------------------
# The registry is the only place where a model's facts are written
# ----------------------------------------------------------------------------------------------
PACKAGE = ROOT / "larq_bnext"
#: Hosts of the published checkpoints: their links are written only in the registry.
CHECKPOINT_HOSTS = ("owncloud.hpi.de", "nextcloud.hpi.de", "drive.google.com")
#: Numbers that are facts of a model or of its recipe (written only in larq_bnext/registry.py).
FACT_NUMBERS = {
    1e-7: "the sign threshold of BNext-T/S/M/L, the recipe's minimum learning rate",
    1e-5: "BNext-18's sign threshold, BatchNorm's epsilon, the warm-up learning rate",
    1e-3: "the learning rate, the weight decay, the kernels' initial standard deviation",
    1.5: "the weight and activation clip",
    0.95: "the evaluation crop fraction",
    **{v: "the ImageNet mean and std" for v in (0.485, 0.456, 0.406, 0.229, 0.224, 0.225)},
}


def _exempt_strings(tree) -> set[int]:
    """ids of the string constants that state no fact: documentation (a bare string
    statement), names of Python objects (``__all__``), registry lookups by key
    (``resolve_model("bnext18")``), one side of a comparison (``method == "bicubic"``) and
    matplotlib's font sizes (``fontsize="small"``)."""
    exempt = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            exempt.add(id(node.value))
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exempt |= {id(n) for n in ast.walk(node.value)}
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "resolve_model" and node.args:
                exempt.add(id(node.args[0]))
            exempt |= {id(k.value) for k in node.keywords if k.arg == "fontsize"}
        elif isinstance(node, ast.Compare):
            exempt |= {id(side) for side in (node.left, *node.comparators)}
    return exempt


def _int_sequence(node) -> tuple[int, ...] | None:
    """The ints of a tuple/list literal (the first of each inner tuple), or None."""
    if not isinstance(node, (ast.Tuple, ast.List)) or len(node.elts) < 3:
        return None
    values = []
    for elt in node.elts:
        if isinstance(elt, (ast.Tuple, ast.List)) and elt.elts:
            elt = elt.elts[0]
        if not (isinstance(elt, ast.Constant) and type(elt.value) is int):
            return None
        values.append(elt.value)
    return tuple(values)


def _distinct(values) -> tuple:
    return tuple(dict.fromkeys(values))


def fact_literals(source: str, architecture: bool = True) -> list[tuple[int, str]]:
    """``(line, what)`` for each fact of a registry model written in ``source``'s code.

    ``architecture``: the module builds or maps models (``models/``, ``weights/``), where a
    division by 8 is the squeeze-and-excitation ratio.
    """
    tree = ast.parse(source)
    exempt = _exempt_strings(tree)
    spellings = {s for m in registry.list_models() for s in m.spellings if len(s) > 3}
    channels = {_distinct(m.stage_channels): m.display_name for m in registry.list_models()}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            value = node.value
            if type(value) is float and value in FACT_NUMBERS:
                found.append((node.lineno, f"{value!r}: {FACT_NUMBERS[value]}"))
            elif isinstance(value, str) and id(node) not in exempt:
                if value.strip().lower() in spellings:
                    found.append((node.lineno, f"the model name {value!r}"))
                elif any(host in value for host in CHECKPOINT_HOSTS):
                    found.append((node.lineno, "a checkpoint URL"))
                elif value == registry.IMAGENET_PREPROCESSING.interpolation:
                    found.append((node.lineno, "the interpolation"))
        elif (
            architecture
            and isinstance(node, ast.BinOp)
            and isinstance(node.op, (ast.FloorDiv, ast.Div))
        ):
            if isinstance(node.right, ast.Constant) and node.right.value == 8:
                found.append((node.lineno, "a division by 8: the SE ratio"))
        elif isinstance(node, ast.JoinedStr):
            for part, after in zip(node.values, node.values[1:], strict=False):
                text = part.value if isinstance(part, ast.Constant) else ""
                if isinstance(after, ast.FormattedValue) and text.lower().endswith(
                    ("bnext-", "bnext_")
                ):
                    found.append((node.lineno, f"a model name rebuilt from {text!r}"))
        sequence = _int_sequence(node)
        if sequence and _distinct(sequence) in channels:
            found.append((node.lineno, f"the stage channels of {channels[_distinct(sequence)]}"))
    return found


def test_the_fact_finder_finds_each_kind_of_fact():
    source = (
        'THRESHOLD = 1e-7\nfill = x // 8\nname = "bnext_tiny"\nshown = f"BNext-{letter}"\n'
        "STAGES = ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))\n"
        'URL = "https://owncloud.hpi.de/s/x"\nmethod = "bicubic"\n'
        'DRIVE = "https://drive.google.com/file/d/x/view"\n'
        '"""A docstring may say 1e-7, bnext_tiny and bicubic."""\nok = method == "bicubic"\n'
    )
    assert [line for line, _ in fact_literals(source)] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_facts_of_a_model_are_written_only_in_the_registry():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "registry.py" and path.parent == PACKAGE:
            continue
        relative = path.relative_to(ROOT)
        architecture = relative.parts[1] in ("models", "weights")
        found += [
            f"{relative}:{line}: {what}"
            for line, what in fact_literals(path.read_text(), architecture)
        ]
    assert not found, "Read these from larq_bnext.registry instead:\n  " + "\n  ".join(found)
