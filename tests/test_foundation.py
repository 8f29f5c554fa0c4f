"""The shared pieces: atomic writes, uint8 conversion, grids, config JSON round trip, CLI basics."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error
from stylemri import cli, io
from stylemri.config import DataConfig, NetworkConfig, from_dict, to_dict


def test_to_uint8_exact_mapping():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    assert io.to_uint8(x).tolist() == [0, 0, 64, 128, 191, 255, 255]  # rint((x+1)*127.5), clipped


def test_to_uint16_range():
    assert io.to_uint16(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 32768, 65535]


def test_make_grid_places_tiles():
    imgs = np.stack([np.full((1, 4, 4), v, np.uint8) for v in (10, 20, 30)])
    grid = io.make_grid(imgs, ncols=2, pad=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 1)
    assert grid[1, 1, 0] == 10 and grid[1, 6, 0] == 20 and grid[6, 1, 0] == 30 and grid[6, 6, 0] == 0


def test_save_grid_png_roundtrip(tmp_path):
    imgs = torch.linspace(-1, 1, 2 * 1 * 8 * 8).reshape(2, 1, 8, 8)
    path = io.save_grid(tmp_path / "g.png", imgs, ncols=2)
    arr = np.asarray(Image.open(path))
    assert arr.ndim == 2 and arr.dtype == np.uint8 and arr.max() == 255 and arr.min() == 0


def test_save_image_16bit(tmp_path):
    arr = np.arange(0, 65536, 4096, dtype=np.uint16).reshape(4, 4)
    path = io.save_image(tmp_path / "a.png", arr)
    back = np.asarray(Image.open(path))
    assert np.array_equal(back.astype(np.uint16), arr)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_config_roundtrip_and_unknown_key():
    cfg = DataConfig(source="x", classes=("AD", "NC"), cache_dir=None)
    back = from_dict(DataConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg and isinstance(back.classes, tuple)
    assert from_dict(NetworkConfig, to_dict(NetworkConfig(conv_clamp=256.0))) == NetworkConfig(conv_clamp=256.0)
    with pytest.raises(ValueError, match="unknown"):
        from_dict(DataConfig, {"nope": 1})


def test_cli_version_and_bad_command(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and "stylemri" in capsys.readouterr().out
    assert "error" in one_line_error(capsys, "no-such-command")
