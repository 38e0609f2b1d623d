"""vidfx.ops.weights: one weights-file format, atomic writes, clear errors, the shared-model cache."""

import os
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import vidfx
from vidfx.core.errors import ModelError
from vidfx.ops import weights as w

PACKAGE = Path(vidfx.__file__).resolve().parent
SHIPPED = {
    PACKAGE / "vsr" / "weights" / "tiny_x2.pt": "vsr",
    PACKAGE / "vsr" / "weights" / "tiny_x4.pt": "vsr",
    PACKAGE / "vsr" / "weights" / "tiny_x4_detail.pt": "vsr",
    PACKAGE / "segment" / "weights" / "camvid_mbconv_unet.pt": "segment",
    PACKAGE / "jumpcut" / "weights" / "jumpcut_prior.pt": "jumpcut",
}


class Tiny(nn.Module):
    """A two-layer model with a dataclass-like config dict."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)


def build_tiny(weights: w.Weights) -> Tiny:
    return Tiny(weights.config["width"])


def _saved(path: Path, width: int = 4, seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny(width)
    w.save_weights(path, "tiny", model, {"width": width}, {"note": "test", "val": [1.5, 2]})
    return model


@pytest.fixture(autouse=True)
def empty_cache():
    w.clear_cache()
    yield
    w.clear_cache()


@pytest.mark.parametrize("path,family", list(SHIPPED.items()), ids=lambda v: getattr(v, "name", v))
def test_shipped_files_are_in_the_one_format(path, family):
    assert path.is_file(), f"shipped weights missing: {path}"
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["format"] == w.FORMAT and blob["family"] == family
    assert set(blob) == {"format", "family", "config", "state_dict", "meta"}
    loaded = w.read_weights(path, family)
    assert loaded.state_dict and all(v.dtype != torch.float16 for v in loaded.state_dict.values())


def test_round_trip_keeps_tensors_config_and_meta(tmp_path):
    model = _saved(tmp_path / "m.pt")
    loaded, meta = w.build_model(tmp_path / "m.pt", "tiny", build_tiny)
    assert meta == {"note": "test", "val": [1.5, 2]}
    assert not loaded.training
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    # half: floating tensors stored as float16, read back as float32 (integers untouched)
    w.save_weights(tmp_path / "h.pt", "tiny", model, {"width": 4}, half=True)
    half = w.read_weights(tmp_path / "h.pt", "tiny")
    assert half.state_dict["conv.weight"].dtype == torch.float32
    assert torch.equal(half.state_dict["conv.weight"], model.conv.weight.detach().half().float())
    assert torch.equal(half.state_dict["norm.num_batches_tracked"], model.norm.num_batches_tracked)


def test_a_crash_mid_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    old = _saved(path, seed=0)
    before = path.read_bytes()

    def crash(obj, fh, *args, **kwargs):
        fh.write(b"half a file")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        _saved(path, seed=1)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary file left behind
    loaded, _ = w.build_model(path, "tiny", build_tiny)
    assert torch.equal(loaded.conv.weight, old.conv.weight)


@pytest.mark.parametrize("layout", ["vsr", "segment", "jumpcut"])
def test_older_layouts_are_upgraded_in_place_with_the_same_tensors(tmp_path, layout):
    model = Tiny(4)
    state = {k: v.half() if layout == "segment" and v.is_floating_point() else v for k, v in model.state_dict().items()}
    old = {
        "vsr": {"format": "vidfx-vsr-1", "config": {"width": 4}, "state_dict": state, "meta": {"step": 7}},
        "segment": {"config": {"width": 4}, "state_dict": state, "meta": {"step": 7}},
        "jumpcut": {"config": {"width": 4}, "model": state},
    }[layout]
    path = tmp_path / "old.pt"
    torch.save(old, path)
    w.upgrade_weights(path, "tiny")
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == w.FORMAT and blob["family"] == "tiny" and blob["config"] == {"width": 4}
    assert blob["meta"] == old.get("meta", {})
    for k, v in state.items():
        assert blob["state_dict"][k].dtype == v.dtype and torch.equal(blob["state_dict"][k], v), k
    w.build_model(path, "tiny", build_tiny)
    with pytest.raises(ModelError, match="not a weights file of an older vidfx layout"):
        w.upgrade_weights(path, "tiny")


def test_checkpoints_are_atomic_and_plain(tmp_path):
    model = Tiny(2)
    opt = torch.optim.Adam(model.parameters())
    model.conv.weight.sum().backward()
    opt.step()
    w.save_checkpoint(tmp_path / "last.pt", {"model": model.state_dict(), "opt": opt.state_dict(), "step": 3})
    ck = w.load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 3 and torch.equal(ck["model"]["conv.weight"], model.conv.weight)
    assert os.listdir(tmp_path) == ["last.pt"]


def test_missing_corrupt_and_wrong_files_raise_one_line_model_errors(tmp_path):
    cases = {}
    cases["missing.pt"] = "not found"
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint at all" * 20)
    cases["corrupt.pt"] = "cannot read"
    _saved(tmp_path / "good.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:300])
    cases["truncated.pt"] = "cannot read"
    torch.save({"config": {"width": 4}, "state_dict": {}}, tmp_path / "old_layout.pt")
    cases["old_layout.pt"] = "pre-vidfx-weights-1 layout; rewrite it once with vidfx.ops.weights.upgrade_weights"
    torch.save({"weights": [1, 2]}, tmp_path / "other_dict.pt")
    cases["other_dict.pt"] = "not a vidfx weights file"
    torch.save({"x": Tiny(1)}, tmp_path / "pickled_code.pt")  # weights_only refuses to unpickle code
    cases["pickled_code.pt"] = "cannot read"
    (tmp_path / "other.pt").write_bytes((tmp_path / "good.pt").read_bytes())
    for name, why in cases.items():
        for load in (lambda p: w.read_weights(p, "tiny"), lambda p: w.load_model(p, "tiny", build_tiny)):
            with pytest.raises(ModelError, match=why) as err:
                load(tmp_path / name)
            assert name in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(ModelError, match="other.pt holds 'tiny' weights, not 'vsr'"):
        w.read_weights(tmp_path / "other.pt", "vsr")
    w.save_weights(tmp_path / "wide.pt", "tiny", Tiny(8), {"width": 4})  # config does not match the tensors
    with pytest.raises(ModelError, match="wide.pt does not match the model") as err:
        w.build_model(tmp_path / "wide.pt", "tiny", build_tiny)
    assert "\n" not in str(err.value)


def test_cache_returns_the_same_model_and_reloads_a_changed_file(tmp_path):
    path = tmp_path / "m.pt"
    _saved(path, seed=0)
    first, meta = w.load_model(path, "tiny", build_tiny)
    again, _ = w.load_model(path, "tiny", build_tiny)
    assert again is first
    assert not any(p.requires_grad for p in first.parameters())  # shared: inference only
    meta["note"] = "changed by a caller"
    assert w.load_model(path, "tiny", build_tiny)[1]["note"] == "test"
    # another build of the same file is another entry
    assert w.load_model(path, "tiny", build_tiny_channels_last)[0] is not first
    # the file changes (new contents, new mtime): loaded again
    new = _saved(path, seed=1)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reloaded, _ = w.load_model(path, "tiny", build_tiny)
    assert reloaded is not first and torch.equal(reloaded.conv.weight, new.conv.weight)


def build_tiny_channels_last(weights: w.Weights) -> Tiny:
    return build_tiny(weights).to(memory_format=torch.channels_last)


def test_cache_keeps_a_few_models_and_is_thread_safe(tmp_path):
    paths = [tmp_path / f"m{i}.pt" for i in range(w.CACHE_SIZE + 1)]
    for i, p in enumerate(paths):
        _saved(p, seed=i)
    first, _ = w.load_model(paths[0], "tiny", build_tiny)
    for p in paths[1:]:
        w.load_model(p, "tiny", build_tiny)
    assert w.load_model(paths[0], "tiny", build_tiny)[0] is not first  # least recently used went first
    w.clear_cache()
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(w.load_model(paths[1], "tiny", build_tiny)[0])) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(m is got[0] for m in got)


def test_run_args_record_arguments_version_and_date(tmp_path):
    import argparse
    import json

    args = argparse.Namespace(out=tmp_path, lr=1e-3, steps=5, resume=False, scales=[0.5, 1.0])
    path = w.write_run_args(tmp_path, args)
    record = json.loads(path.read_text())
    assert record["args"] == {"out": str(tmp_path), "lr": 1e-3, "steps": 5, "resume": False, "scales": [0.5, 1.0]}
    assert record["vidfx_version"] == vidfx.__version__ and record["date"][:2] == "20"
