"""The torch-free checkpoint reader: exact tensors, lazy storages, refusal of code, clear errors.

Checkpoints are written by real ``torch.save`` calls; the reader's output is compared with the
tensors that were saved.
"""

import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from larq_bnext.weights import pytorch_reader
from larq_bnext.weights.pytorch_reader import (
    CheckpointError,
    LazyTensor,
    TorchCheckpoint,
    UnsafeCheckpointError,
    read_state_dict,
)


def _tensors():
    torch.manual_seed(0)
    base = torch.randn(4, 5)
    return {
        "float32": torch.randn(3, 2, 3, 3),
        "float64": torch.randn(7, dtype=torch.float64),
        "float16": torch.randn(6).half(),
        "bfloat16": torch.randn(5).bfloat16(),
        "int64_scalar": torch.tensor(12345),  # like num_batches_tracked
        "int32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "uint8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "column_view": base[:, 2],  # offset + stride into a shared storage
        "transposed": base.t(),  # non-contiguous
        "same_storage": base,
        "expanded": torch.ones(1).expand(3, 4),  # stride 0
        "empty": torch.zeros(0, 3),
        "temperature": torch.ones(1) * 0.9**153,
    }


def _expected(t: torch.Tensor) -> np.ndarray:
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def test_reads_every_dtype_and_layout_exactly(tmp_path):
    tensors = _tensors()
    path = tmp_path / "ckpt.pth.tar"
    torch.save(
        {
            "epoch": 7,
            "state_dict": {"module." + k: v for k, v in tensors.items()},
            "best_top1_acc": torch.tensor(72.4),
            "numpy_float": np.float64(0.25),
            "numpy_array": np.arange(4, dtype=np.int16),
            "curve": [1.0, 2.0],
            "betas": (0.9, 0.999),
        },
        path,
    )
    with TorchCheckpoint(path) as ckpt:
        assert ckpt.object["epoch"] == 7
        assert ckpt.object["numpy_float"] == 0.25
        np.testing.assert_array_equal(ckpt.object["numpy_array"], np.arange(4, dtype=np.int16))
        assert ckpt.object["betas"] == (0.9, 0.999)
        state = ckpt.state_dict()
        assert list(state) == list(tensors)  # prefix removed, order kept
        for key, tensor in tensors.items():
            lazy = state[key]
            assert isinstance(lazy, LazyTensor)
            assert lazy.shape == tuple(tensor.shape)
            got = lazy.numpy()
            want = _expected(tensor)
            assert got.dtype == want.dtype, key
            np.testing.assert_array_equal(got, want, err_msg=key)
        assert float(ckpt.object["best_top1_acc"].numpy()) == pytest.approx(72.4)


def test_bare_state_dict_and_read_state_dict(tmp_path):
    tensors = {"a.weight": torch.randn(3, 3), "b.running_mean": torch.randn(3)}
    path = tmp_path / "bare.pt"
    torch.save(tensors, path)
    state = read_state_dict(path)
    assert list(state) == ["a.weight", "b.running_mean"]
    for key, tensor in tensors.items():
        np.testing.assert_array_equal(state[key], tensor.numpy())


def test_reads_checkpoints_saved_from_cuda(tmp_path):
    """Storages saved from a GPU carry a 'cuda:0' location; the reader ignores it."""
    tensors = {"w": torch.randn(2, 3), "n": torch.tensor(3)}

    def cuda_tagger(obj):
        return "cuda:0"

    registry = torch.serialization._package_registry
    before = list(registry)
    torch.serialization.register_package(0, cuda_tagger, lambda obj, location: obj)
    try:
        path = tmp_path / "gpu.pth.tar"
        torch.save({"state_dict": {"module." + k: v for k, v in tensors.items()}}, path)
    finally:
        registry[:] = before
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"cuda:0" in pkl
    state = read_state_dict(path)
    for key, tensor in tensors.items():
        np.testing.assert_array_equal(state[key], tensor.numpy())


def test_storages_are_read_lazily(tmp_path, monkeypatch):
    """Optimizer state and other entries next to the weights are never read."""
    weights = {"module.w": torch.randn(4, 4), "module.b": torch.randn(4)}
    optimizer_state = {i: {"exp_avg": torch.randn(1000)} for i in range(3)}
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": weights, "optimizer": {"state": optimizer_state}}, path)

    read = []
    original = pytorch_reader._Archive.read_storage

    def spy(self, key):
        read.append(key)
        return original(self, key)

    monkeypatch.setattr(pytorch_reader._Archive, "read_storage", spy)
    with TorchCheckpoint(path) as ckpt:
        state = ckpt.state_dict()
        assert read == []  # opening and listing read no tensor data
        arrays = {k: v.numpy() for k, v in state.items()}
        assert sorted(read) == sorted(v.storage_key for v in state.values())
        optimizer_keys = {
            v["exp_avg"].storage_key for v in ckpt.object["optimizer"]["state"].values()
        }
        assert optimizer_keys.isdisjoint(read)
    np.testing.assert_array_equal(arrays["w"], weights["module.w"].numpy())


class _RunsCommand:
    """Pickles to a call of os.system (what a malicious checkpoint would do)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _RunsEval:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


class _RunsSubprocess:
    def __init__(self, args):
        self.args = args

    def __reduce__(self):
        return (subprocess.call, (self.args,))


def _malicious_archive(path, payload, protocol):
    """A torch.save-shaped zip whose data.pkl holds ``payload`` next to genuine tensors."""
    torch.save({"state_dict": {"w": torch.randn(2)}}, path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    pkl_name = next(n for n in members if n.endswith("data.pkl"))
    members[pkl_name] = pickle.dumps(
        {"epoch": 1, "state_dict": {}, "evil": payload}, protocol=protocol
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return members[pkl_name]


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess"])
def test_refuses_pickles_that_run_code(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    payload = {
        "os.system": _RunsCommand(command),
        "eval": _RunsEval(f"open({str(marker)!r}, 'w').close()"),
        "subprocess": _RunsSubprocess(["touch", str(marker)]),
    }[kind]
    path = tmp_path / "evil.pth.tar"
    data = _malicious_archive(path, payload, protocol)

    with pytest.raises(UnsafeCheckpointError, match="refusing to load") as info:
        TorchCheckpoint(path)
    assert not marker.exists(), "the checkpoint's code ran"
    assert "nothing was executed" in str(info.value)
    # The same reader also refuses it through the convenience functions.
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(path)
    assert not marker.exists()

    # Control: the payload is real. Plain pickle would have run it.
    if kind == "os.system":
        pickle.loads(data)
        assert marker.exists()


def test_refuses_non_allowlisted_torch_globals(tmp_path):
    """Only tensor/storage rebuilders are allowed, not any torch.* name."""
    path = tmp_path / "t.pth.tar"
    torch.save({"w": torch.randn(2)}, path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    pkl_name = next(n for n in members if n.endswith("data.pkl"))
    # GLOBAL 'torch.serialization load' then call it: torch.load on an attacker-chosen file.
    members[pkl_name] = b"\x80\x02ctorch.serialization\nload\nq\x00X\x03\x00\x00\x00x.ptq\x01\x85R."
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(UnsafeCheckpointError, match="torch.serialization.load"):
        TorchCheckpoint(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": {"w": torch.randn(64, 64)}}, path)
    data = path.read_bytes()
    truncated = tmp_path / "partial.pth.tar"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        TorchCheckpoint(truncated)


def test_corrupted_tensor_bytes_fail_the_crc(tmp_path):
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": {"w": torch.randn(64, 64)}}, path)
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data/0"))
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with TorchCheckpoint(path) as ckpt:
        tensor = ckpt.state_dict()["w"]
        assert tensor.shape == (64, 64)
        with pytest.raises(CheckpointError, match="corrupt"):
            tensor.numpy()


def test_other_formats_are_clear_errors(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.randn(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy"):
        TorchCheckpoint(legacy)

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        TorchCheckpoint(junk)

    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        TorchCheckpoint(other_zip)

    no_weights = tmp_path / "meta.pth.tar"
    torch.save({"epoch": 3, "best_top1_acc": 1.0}, no_weights)
    with pytest.raises(CheckpointError, match="no model state dict"):
        read_state_dict(no_weights)


def test_reader_matches_torch_load_on_a_reference_checkpoint(tmp_path):
    """Cross-check with torch.load on a checkpoint written like the original's."""
    from tests.torch_reference import TorchBNext, randomize_, save_like_original

    model = randomize_(TorchBNext([8, 16, 32, 32], num_classes=10), seed=3)
    path = tmp_path / "ref.pth.tar"
    save_like_original(model, path, with_optimizer_state=True)
    expected = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    got = read_state_dict(path)
    assert list(got) == [k[len("module.") :] for k in expected]
    for key, tensor in expected.items():
        np.testing.assert_array_equal(got[key[len("module.") :]], tensor.numpy())


def test_lazy_tensor_array_protocol(tmp_path):
    path = tmp_path / "a.pt"
    torch.save({"w": torch.arange(4.0)}, path)
    with TorchCheckpoint(path) as ckpt:
        lazy = ckpt.state_dict()["w"]
        assert lazy.ndim == 1 and lazy.size == 4 and lazy.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(lazy, dtype=np.float64), [0, 1, 2, 3])
        assert "LazyTensor" in repr(lazy)
