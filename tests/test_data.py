"""Proxy datasets: config, the three kinds, the cache's promises, DeviceLoader, `data prepare`."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimsearch.data import DataConfig, DeviceLoader, ProxyData, Split, load_data
from dimsearch.data import cache as cache_mod
from dimsearch.data import idx as idx_mod
from dimsearch.data import imagefolder as imagefolder_mod
from dimsearch.data import loader as loader_mod
from dimsearch.data import synthetic as synthetic_mod
from dimsearch.data.config import KINDS
from dimsearch.data.dataset import channel_stats
from dimsearch.data.kinds import LOADERS
from dimsearch.data.load import loader
from dimsearch.errors import DataError

# ---------------------------------------------------------------------------------------------
# helpers


def write_imagefolder(
    root: Path, classes: dict[str, int] | None = None, val: int = 2, corrupt: bool = False
) -> Path:
    """A tiny ImageNet-layout folder of real JPEG and PNG files (odd sizes, to be cropped)."""
    classes = classes or {"cat": 4, "dog": 4, "emu": 4}
    rng = np.random.default_rng(0)
    for split, counts in (("train", classes), ("val", dict.fromkeys(classes, val))):
        for k, (name, n) in enumerate(counts.items()):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (30 + 7 * k, 44, 3), dtype=np.uint8)
                ext = ".JPEG" if i % 2 == 0 else ".png"
                Image.fromarray(pixels).save(folder / f"img{i}{ext}")
    (root / "train" / "cat" / "notes.txt").write_text("not an image, ignored")
    if corrupt:
        (root / "train" / "dog" / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def folder_cfg(root: Path, tmp_path: Path, **kw: object) -> DataConfig:
    values = {"kind": "imagefolder", "root": str(root), "img_size": 16}
    return DataConfig(**{**values, "cache_dir": str(tmp_path / "cache"), **kw})


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        Path(f"{path}.gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_idx_root(root: Path, gz: bool, n_train: int = 40, n_val: int = 20) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 4, gz)
    return root


# ---------------------------------------------------------------------------------------------
# config


def test_every_kind_has_a_builder() -> None:
    assert set(LOADERS) == set(KINDS)
    for kind in KINDS:  # each "module:function" entry names a function that exists
        assert callable(loader(kind)), kind
    assert loader("idx") is idx_mod.build_idx


def test_config_round_trips_and_names_bad_keys() -> None:
    cfg = DataConfig.from_dict({"kind": "idx", "img_size": 28, "train_per_class": 100})
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DataError, match=r"space\.yaml:data\.colour is not a data option"):
        DataConfig.from_dict({"colour": 1}, where="space.yaml:data")
    with pytest.raises(DataError, match=r"data\.img_size must be an integer in \[8, 1024\]"):
        DataConfig.from_dict({"img_size": "32"})
    with pytest.raises(DataError, match=r"data\.num_classes must be null or an integer in \[2, "):
        DataConfig.from_dict({"num_classes": True})
    with pytest.raises(DataError, match=r"data\.num_classes must be .*, got 1$"):  # no classifier
        DataConfig.from_dict({"num_classes": 1})
    with pytest.raises(DataError, match=r"data\.kind must be one of \['synthetic'"):
        DataConfig.from_dict({"kind": "cifar"})
    with pytest.raises(DataError, match=r"data\.root is required for kind 'imagefolder'"):
        DataConfig.from_dict({"kind": "imagefolder"})
    with pytest.raises(DataError, match=r"data must be a mapping"):
        DataConfig.from_dict(["kind"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# synthetic


def test_synthetic_is_deterministic_balanced_and_seeded() -> None:
    cfg = DataConfig(img_size=24, num_classes=6, train_per_class=12, val_per_class=4)
    a, b = load_data(cfg), load_data(cfg)
    assert a.train.images.shape == (72, 24, 24, 3) and a.val.images.shape == (24, 24, 24, 3)
    assert a.train.images.dtype == np.uint8 and a.train.labels.dtype == np.int64
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.val.images, b.val.images)
    assert np.bincount(a.train.labels).tolist() == [12] * 6
    assert np.bincount(a.val.labels).tolist() == [4] * 6
    assert len(set(a.class_names)) == 6 and a.channels == 3 and a.num_classes == 6
    assert not np.array_equal(a.train.images[:24], a.val.images)  # splits differ
    c = load_data(DataConfig(img_size=24, num_classes=6, train_per_class=12, seed=1))
    assert not np.array_equal(a.train.images, c.train.images)
    assert a.info["cache_path"] is None and a.info["train_count"] == 72
    assert a.train.images.std() > 20  # pictures, not a constant


def test_synthetic_class_count_limit() -> None:
    assert len(synthetic_mod.class_defs(synthetic_mod.MAX_CLASSES)) == synthetic_mod.MAX_CLASSES
    with pytest.raises(DataError, match=r"data\.num_classes must be in \[1, 1104\]"):
        load_data(DataConfig(num_classes=synthetic_mod.MAX_CLASSES + 1))


def test_synthetic_mirrored_classes_defeat_a_colour_histogram() -> None:
    """Classes 0 and 1 hold the same two parts, mirrored: colour statistics cannot tell them
    apart (nearest centroid on per-image colour histograms stays near chance)."""
    split = synthetic_mod.generate_split(2, 300, 32, seed=0, split=0)
    assert [d[2] for d in synthetic_mod.class_defs(2)] == ["left_of", "left_of"]
    q = split.images.reshape(len(split), -1, 3) // 64  # 4 levels per channel
    codes = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
    hist = np.stack([np.bincount(c, minlength=64) for c in codes]).astype(float)
    train, test = slice(0, 400), slice(400, 600)
    y = split.labels
    centroids = np.stack([hist[train][y[train] == k].mean(0) for k in (0, 1)])
    dist = ((hist[test, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (dist.argmin(1) == y[test]).mean()
    assert accuracy < 0.65


# ---------------------------------------------------------------------------------------------
# imagefolder


def test_imagefolder_loads_skips_corrupt_and_caches(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "folder", corrupt=True)
    data = load_data(folder_cfg(root, tmp_path))
    assert data.class_names == ["cat", "dog", "emu"] and data.num_classes == 3
    assert data.train.images.shape == (12, 16, 16, 3) and data.val.images.shape == (6, 16, 16, 3)
    assert np.bincount(data.train.labels).tolist() == [4, 4, 4]
    assert data.info["skipped_count"] == 1
    assert data.info["skipped_first"] == [str(root / "train" / "dog" / "broken.JPEG")]
    assert data.info["cache_reused"] is False and data.info["cache_bytes"] > 0
    cache = Path(data.info["cache_path"])
    assert sorted(p.name for p in cache.iterdir()) == [
        "manifest.json",
        "train_images.npy",
        "train_labels.npy",
        "val_images.npy",
        "val_labels.npy",
    ]
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["source"] == str(root.resolve()) and manifest["counts"]["train"] == 12
    assert isinstance(data.train.images, np.memmap)
    mean, std = channel_stats(np.asarray(data.train.images))
    assert data.mean == pytest.approx(mean) and data.std == pytest.approx(std)


def test_imagefolder_decodes_shorter_side_then_centre(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for split in ("train", "val"):
        (root / split / "only").mkdir(parents=True)
        left_red = np.zeros((40, 80, 3), np.uint8)  # wide: the centre square is all blue
        left_red[:, :12, 0], left_red[:, 12:, 2] = 255, 255
        Image.fromarray(left_red).save(root / split / "only" / "a.png")
    data = load_data(folder_cfg(root, tmp_path))
    img = np.asarray(data.train.images[0])
    assert img[..., 2].min() > 240 and img[..., 0].max() < 15


def test_imagefolder_on_corrupt_error_names_the_file(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "folder", corrupt=True)
    with pytest.raises(DataError, match=r"broken\.JPEG"):
        load_data(folder_cfg(root, tmp_path, on_corrupt="error"))
    assert not list((tmp_path / "cache").glob("imagefolder-*"))  # nothing half-built is left


def _drop_val(root: Path) -> str:
    os.rename(root / "val", root / "elsewhere")
    return str(root / "val")


def _empty_class(root: Path) -> str:
    (root / "train" / "fox").mkdir()
    (root / "val" / "fox").mkdir()
    return str(root / "train" / "fox")


def _class_missing_in_val(root: Path) -> str:
    for f in (root / "val" / "emu").iterdir():
        f.unlink()
    (root / "val" / "emu").rmdir()
    return str(root / "val" / "emu")


@pytest.mark.parametrize(
    "break_it",
    [lambda root: str(root / "nope"), _drop_val, _empty_class, _class_missing_in_val],
    ids=["missing-root", "missing-val", "empty-class", "class-not-in-val"],
)
def test_imagefolder_layout_errors_name_the_path(tmp_path: Path, break_it) -> None:
    root = write_imagefolder(tmp_path / "folder")
    path = break_it(root)
    cfg_root = Path(path) if path.endswith("nope") else root
    with pytest.raises(DataError) as err:
        load_data(folder_cfg(cfg_root, tmp_path))
    assert path in str(err.value)


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("decoded although the cache should have been reused")


def test_cache_is_reused_and_rebuilt_when_something_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_imagefolder(tmp_path / "folder")
    first = load_data(folder_cfg(root, tmp_path))
    with monkeypatch.context() as m:
        m.setattr(imagefolder_mod, "_decode_files", _fail)
        again = load_data(folder_cfg(root, tmp_path))
    assert (
        again.info["cache_reused"] is True and again.info["cache_path"] == first.info["cache_path"]
    )
    np.testing.assert_array_equal(first.train.images, again.train.images)

    # an option changes what is stored -> another cache, built
    bigger = load_data(folder_cfg(root, tmp_path, img_size=20))
    assert bigger.info["cache_reused"] is False and bigger.train.images.shape[1] == 20
    subset = load_data(folder_cfg(root, tmp_path, num_classes=2, train_per_class=3))
    assert subset.info["cache_reused"] is False and subset.num_classes == 2
    assert len(subset.train) == 6 and set(subset.class_names) < {"cat", "dog", "emu"}
    again = load_data(folder_cfg(root, tmp_path, num_classes=2, train_per_class=3))
    assert again.class_names == subset.class_names  # the subset is deterministic
    np.testing.assert_array_equal(again.train.images, subset.train.images)

    # a source file changes -> the same cache, rebuilt
    changed = root / "train" / "cat" / "img1.png"
    Image.fromarray(np.full((30, 44, 3), 7, np.uint8)).save(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rebuilt = load_data(folder_cfg(root, tmp_path))
    assert rebuilt.info["cache_reused"] is False
    assert rebuilt.info["cache_reason"] == "source files changed"
    assert rebuilt.info["cache_path"] == first.info["cache_path"]
    assert not np.array_equal(rebuilt.train.images, first.train.images)

    # a damaged cache file fails its checksum -> rebuilt, never trusted
    expected = np.array(rebuilt.train.images)  # the memory map would see the damage
    images = Path(rebuilt.info["cache_path"]) / "train_images.npy"
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 0xFF
    images.write_bytes(bytes(raw))
    healed = load_data(folder_cfg(root, tmp_path))
    assert healed.info["cache_reason"] == "checksum mismatch in train_images.npy"
    np.testing.assert_array_equal(healed.train.images, expected)


def test_a_killed_build_leaves_no_trusted_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_imagefolder(tmp_path / "folder")

    def die_halfway(paths, size, out, *args, **kwargs):
        out[: len(paths) // 2] = 1
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(imagefolder_mod, "_decode_files", die_halfway)
        with pytest.raises(KeyboardInterrupt):
            load_data(folder_cfg(root, tmp_path))
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []
    data = load_data(folder_cfg(root, tmp_path))
    assert data.info["cache_reused"] is False and len(data.train) == 12


def test_parallel_decoding_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_imagefolder(tmp_path / "folder", corrupt=True)
    serial = load_data(folder_cfg(root, tmp_path / "a", workers=1))
    monkeypatch.setattr(imagefolder_mod, "_MIN_PARALLEL", 0)
    monkeypatch.setattr(imagefolder_mod, "_CHUNK", 3)
    parallel = load_data(folder_cfg(root, tmp_path / "b", workers=2))
    np.testing.assert_array_equal(serial.train.images, parallel.train.images)
    np.testing.assert_array_equal(serial.train.labels, parallel.train.labels)
    assert parallel.info["skipped_first"] == serial.info["skipped_first"]

    def cache_files(data: ProxyData) -> list[tuple[str, str]]:
        files = Path(data.info["cache_path"]).glob("*.npy")
        return sorted((p.name, cache_mod.file_checksum(p)) for p in files)

    assert cache_files(serial) == cache_files(parallel)


# ---------------------------------------------------------------------------------------------
# idx


def test_idx_plain_and_gzipped_agree(tmp_path: Path) -> None:
    plain = write_idx_root(tmp_path / "plain", gz=False)
    zipped = write_idx_root(tmp_path / "zipped", gz=True)
    cache = str(tmp_path / "cache")
    a = load_data(DataConfig(kind="idx", root=str(plain), img_size=28, cache_dir=cache))
    b = load_data(DataConfig(kind="idx", root=str(zipped), img_size=28, cache_dir=cache))
    assert a.train.images.shape == (40, 28, 28, 1) and a.channels == 1 and a.num_classes == 4
    assert a.val.images.shape == (20, 28, 28, 1) and a.class_names == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.val.labels, b.val.labels)
    small = load_data(
        DataConfig(kind="idx", root=str(zipped), img_size=16, train_per_class=3, cache_dir=cache)
    )
    assert small.train.images.shape == (12, 16, 16, 1)
    assert np.bincount(small.train.labels).tolist() == [3, 3, 3, 3]


def test_idx_bad_magic_and_missing_files_are_named(tmp_path: Path) -> None:
    root = write_idx_root(tmp_path / "idx", gz=False)
    bad = root / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + bad.read_bytes()[4:])
    cfg = DataConfig(kind="idx", root=str(root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=rf"{bad}.*magic number 0x00000803, expected 0x00000801"):
        load_data(cfg)
    (root / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match=r"has no train-images-idx3-ubyte or .*\.gz"):
        load_data(cfg)


@pytest.mark.skipif(
    not Path(idx_mod.DEFAULT_IDX_ROOT).is_dir(), reason="Debian's dataset-fashion-mnist absent"
)
def test_real_fashion_mnist(tmp_path: Path) -> None:
    cfg = DataConfig(
        kind="idx", train_per_class=30, val_per_class=10, cache_dir=str(tmp_path / "cache")
    )
    data = load_data(cfg)
    assert data.name == "fashion-mnist-32px" and data.class_names[0] == "t-shirt/top"
    assert data.train.images.shape == (300, 32, 32, 1) and len(data.val) == 100


# ---------------------------------------------------------------------------------------------
# DeviceLoader


def id_split(n: int = 50, size: int = 16, channels: int = 3) -> Split:
    """Random images whose label is their index, so a batch says which samples it holds."""
    images = np.random.default_rng(2).integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    return Split(images=images, labels=np.arange(n, dtype=np.int64))


def make_loader(split: Split, **kw: object) -> DeviceLoader:
    mean, std = channel_stats(split.images)
    kw.setdefault("train", True)
    return DeviceLoader(split, 8, "cpu", mean=mean, std=std, **kw)


@pytest.mark.parametrize("augment", ["none", "crop_flip", "rrc_flip"])
def test_loader_batches_visit_every_sample_once(augment: str) -> None:
    split = id_split()
    loader = make_loader(split, augment=augment, drop_last=False, channels_last=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 7
    x, y = batches[0]
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(50)) and seen.tolist() != list(range(50))
    assert len(make_loader(split, augment=augment)) == 6  # training drops the short batch


def test_loader_normalises_and_keeps_validation_in_order() -> None:
    split = id_split(channels=1)
    loader = make_loader(split, train=False, augment="rrc_flip")  # augment ignored for val
    x = torch.cat([x for x, _ in loader])
    y = torch.cat([y for _, y in loader])
    assert y.tolist() == list(range(50)) and x.shape == (50, 1, 16, 16)
    assert abs(float(x.mean())) < 1e-4 and float(x.std()) == pytest.approx(1.0, abs=1e-3)


def test_loader_is_deterministic_per_seed_and_epoch() -> None:
    split = id_split()

    def epoch(loader: DeviceLoader, e: int) -> list[torch.Tensor]:
        loader.set_epoch(e)
        return [t for batch in loader for t in batch]

    for augment in ("crop_flip", "rrc_flip"):
        a, b = make_loader(split, augment=augment), make_loader(split, augment=augment)
        same = epoch(a, 3), epoch(b, 3)
        assert all(torch.equal(p, q) for p, q in zip(*same, strict=True))
        assert not torch.equal(epoch(a, 4)[1], same[0][1])  # another order next epoch
        c = make_loader(split, augment=augment, seed=1)
        assert not torch.equal(epoch(c, 3)[1], same[0][1])
    d = make_loader(split)
    first, second = [y for _, y in d], [y for _, y in d]  # no set_epoch: still moves on
    assert not torch.equal(torch.cat(first), torch.cat(second))


def test_crop_flip_crops_a_reflected_pad_and_flips() -> None:
    split = id_split(n=16, size=8)
    loader = make_loader(split, augment="crop_flip", drop_last=False)
    mean, std = channel_stats(split.images)
    pad = 1  # max(1, 8 // 8)
    x, y = next(iter(loader))
    raw = torch.from_numpy(split.images).permute(0, 3, 1, 2).float()
    padded = torch.nn.functional.pad(raw, (pad,) * 4, mode="reflect")
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    for img, label in zip(x, y, strict=True):
        back = (img * s[0] + m[0]) * 255  # un-normalise
        candidates = [
            crop
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for crop in (padded[label, :, dy : dy + 8, dx : dx + 8],)
            for crop in (crop, crop.flip(-1))
        ]
        assert any(torch.allclose(back, c, atol=1e-3) for c in candidates)


def test_rrc_flip_with_a_full_box_is_identity_or_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_mod, "RRC_SCALE", (1.0, 1.0))
    monkeypatch.setattr(loader_mod, "RRC_RATIO", (1.0, 1.0))
    split = id_split(n=16)
    x, y = next(iter(make_loader(split, augment="rrc_flip")))
    plain = make_loader(split, train=False)._normalize(torch.from_numpy(split.images[y.numpy()]))
    for got, want in zip(x, plain, strict=True):
        assert torch.allclose(got, want, atol=1e-5) or torch.allclose(got, want.flip(-1), atol=1e-5)


def test_loader_rejects_unknown_augment_and_keeps_a_lone_batch() -> None:
    with pytest.raises(DataError, match=r"augment must be one of \['none', 'crop_flip', 'rrc"):
        make_loader(id_split(), augment="mixup")
    small = make_loader(id_split(n=5))  # drop_last on, but the only batch is kept
    assert len(small) == 1 and len(next(iter(small))[1]) == 5


# ---------------------------------------------------------------------------------------------
# CLI


def run_cli(*args: str):
    from typer.testing import CliRunner

    from dimsearch.cli import app

    return CliRunner().invoke(app, ["data", "prepare", *args], env={"COLUMNS": "200"})


def test_cli_prepare_reports_what_it_found(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "folder", corrupt=True)
    args = ["--kind", "imagefolder", "--root", str(root), "--img-size", "16"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert "classes: cat, dog, emu" in result.output
    assert "train: 12 images   val: 6 images" in result.output
    assert "skipped 1 unreadable file(s)" in result.output
    assert str(root / "train" / "dog" / "broken.JPEG") in result.output
    assert "built (no cache yet)" in result.output and str(tmp_path / "cache") in result.output
    again = run_cli(*args)
    assert again.exit_code == 0 and "reused" in again.output


def test_cli_prepare_reads_a_space_file_and_options_override(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("data:\n  kind: synthetic\n  num_classes: 3\n  train_per_class: 4\n")
    result = run_cli(str(space), "--val-per-class", "2", "--img-size", "16")
    assert result.exit_code == 0, result.output
    assert "train: 12 images   val: 6 images" in result.output and "cache: none" in result.output
    space.write_text("data:\n  kind: synthetic\n  colour: red\n")
    bad = run_cli(str(space))
    assert bad.exit_code == 2 and "data.colour is not a data option" in bad.output


def test_cli_prepare_missing_root_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = run_cli("--kind", "imagefolder", "--root", str(missing))
    assert result.exit_code == 2
    assert str(missing) in result.output.replace("\n", "")


def test_gpu_budget_honours_a_shared_gpus_memory_fraction() -> None:
    gib, gpu_budget = 2**30, loader_mod.gpu_budget
    # alone on an 80 GiB GPU with 70 GiB free: half of the free memory
    assert gpu_budget(70 * gib, 80 * gib, fraction=1.0, reserved=0) == 35 * gib
    # a Ray trial with resources.gpus 0.25 that already holds 4 GiB: half of (20 - 4) GiB,
    # although the device still shows 70 GiB free
    assert gpu_budget(70 * gib, 80 * gib, fraction=0.25, reserved=4 * gib) == 8 * gib
    # over its share already: nothing, never a negative budget
    assert gpu_budget(70 * gib, 80 * gib, fraction=0.25, reserved=30 * gib) == 0


def test_imagefolder_decodes_every_mode_and_skips_broken_files_in_both_splits(
    tmp_path: Path,
) -> None:
    """ImageNet holds grayscale, palette and CMYK JPEGs and a few broken files; a real folder
    also gets truncated copies and empty files. Modes decode to RGB; broken ones are skipped
    and named, in train and in val alike."""
    root = tmp_path / "folder"
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
    broken = []
    for split in ("train", "val"):
        for name in ("ant", "bee"):
            folder = root / split / name
            folder.mkdir(parents=True)
            Image.fromarray(rgb).convert("L").save(folder / "gray.JPEG")
            Image.fromarray(rgb).convert("P").save(folder / "palette.png")
            Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.JPEG")
            Image.fromarray(rgb).convert("RGBA").save(folder / "alpha.png")
            Image.fromarray(rgb).convert("LA").save(folder / "gray_alpha.png")
            whole = folder / "whole.JPEG"
            Image.fromarray(rgb).save(whole)
            data = whole.read_bytes()
            (folder / "truncated.JPEG").write_bytes(data[: len(data) // 2])
            (folder / "empty.JPEG").write_bytes(b"")
            broken += [str(folder / "truncated.JPEG"), str(folder / "empty.JPEG")]
    data = load_data(folder_cfg(root, tmp_path))
    assert data.train.images.shape == (12, 16, 16, 3) and data.val.images.shape == (12, 16, 16, 3)
    assert np.bincount(data.train.labels).tolist() == [6, 6]
    assert np.bincount(data.val.labels).tolist() == [6, 6]
    assert data.info["skipped_count"] == len(broken) == 8
    assert set(data.info["skipped_first"]) <= set(broken) and data.info["skipped_first"]
    # the two grayscale files of each class and split decode to three equal channels
    for split in (data.train, data.val):
        images = np.asarray(split.images).astype(int)
        equal = (images[..., 0] == images[..., 1]).all(axis=(1, 2)) & (
            images[..., 1] == images[..., 2]
        ).all(axis=(1, 2))
        assert int(equal.sum()) == 4
