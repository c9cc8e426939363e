"""The `clip2point` command line, end to end on real ModelNet10 shapes."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from clip2point.cli import main
from helpers import DATA, MN10_TEST, modelnet10_test, needs_data

TINY = ["--model", "tiny-ViT-test", "--weights", "random"]


@pytest.fixture(scope="module")
def chair_npy(tmp_path_factory):
    pts, labels = modelnet10_test()
    i = int(np.nonzero(labels == 2)[0][0])  # the first chair of the test split, y-up
    path = tmp_path_factory.mktemp("shapes") / "chair.npy"
    np.save(path, pts[i])
    return path


@pytest.fixture(autouse=True)
def _own_view_cache(tmp_path, monkeypatch):
    """Commands use the persistent view-feature cache by default: never the developer's own."""
    monkeypatch.setenv("CLIP2POINT_CACHE_DIR", str(tmp_path / "view-cache"))


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "clip2point", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "examples:" in out.stdout and "--weights random" in out.stdout
    sub = subprocess.run([sys.executable, "-m", "clip2point", "zeroshot", "--help"], capture_output=True, text=True)
    assert "--class-set" in sub.stdout and "--depth-encoder" in sub.stdout


@needs_data
def test_render_npy_matches_the_library(chair_npy, tmp_path):
    from clip2point import load_point_cloud, render_depth

    assert main(["-q", "render", str(chair_npy), "-o", str(tmp_path), "--format", "npy"]) == 0
    depth = np.load(tmp_path / "chair_depth.npy", allow_pickle=False)
    assert depth.shape == (10, 224, 224) and depth.dtype == np.float32
    assert depth.max() == 1.0 and depth.min() >= 0.0
    np.testing.assert_array_equal(depth, render_depth(load_point_cloud(chair_npy).points)[0].numpy())


@needs_data
def test_render_png_writes_views_and_grid(chair_npy, tmp_path):
    assert main(["-q", "render", str(chair_npy), "-o", str(tmp_path), "--views", "6", "--image-size", "112"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["chair_grid.png"] + [f"chair_view{k:02d}.png" for k in range(6)]
    from PIL import Image

    assert Image.open(tmp_path / "chair_view00.png").size == (112, 112)


@needs_data
def test_zeroshot_json_output(chair_npy, capsys):
    assert main(["-q", "zeroshot", str(chair_npy), str(chair_npy), "--class-set", "modelnet10", "--json", *TINY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    obj = json.loads(lines[0])
    assert obj["file"] == str(chair_npy) and len(obj["classes"]) == 10 and obj["classes"][6] == "night_stand"  # the release's ModelNet10 prompt
    assert sum(obj["probs"]) == pytest.approx(1, abs=1e-4)
    assert len(obj["view_logits"]) == 6 and len(obj["view_logits"][0]) == 10
    assert obj["top"][0]["class"] == obj["classes"][int(np.argmax(obj["probs"]))]


@needs_data
def test_zeroshot_without_weights_stops_with_advice(chair_npy, capsys):
    code = main(["zeroshot", str(chair_npy), "--classes", "chair,table", "--offline"])
    err = capsys.readouterr().err
    assert code == 2 and "no CLIP weights found" in err and "--weights random" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_input_file_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\n")
    code = main(["zeroshot", str(bad), "--classes", "chair,table", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "broken.ply" in err and len(err.splitlines()) == 1
    assert main(["render", str(tmp_path / "nope.xyz"), "-o", str(tmp_path)]) == 2


@needs_data
def test_eval_reports_accuracy_and_confusion_plot(tmp_path, capsys):
    png = tmp_path / "cm.png"
    code = main(["-q", "eval", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--limit", "24",
                 "--json", "--plot", str(png), *TINY])
    assert code == 0 and png.stat().st_size > 5000
    obj = json.loads(capsys.readouterr().out)
    assert obj["num_shapes"] == 24 and 0 <= obj["accuracy"] <= 1 and len(obj["confusion_matrix"]) == 10
    assert sum(map(sum, obj["confusion_matrix"])) == 24
    assert obj["classes"][6] == "night_stand"  # the release's ModelNet10 prompts; --prompt-style spaced: words
    assert main(["-q", "eval", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--limit", "2", "--json",
                 "--prompt-style", "spaced", *TINY]) == 0
    assert json.loads(capsys.readouterr().out)["classes"][6] == "night stand"


def test_eval_missing_data_dir(tmp_path, capsys):
    assert main(["eval", "--dataset", "modelnet10", "--data-dir", str(tmp_path / "none"), *TINY]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_info_reports_versions_and_weights(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "CLIP weights for ViT-B-32: NOT FOUND" in out and "best_eval.pth" in out
    assert "view-feature cache: 0 entries" in out and "--precision auto on cpu:" in out


def test_data_download_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("clip2point.datasets", fromlist=["DATASET_URLS"]).DATASET_URLS,
                        "modelnet10", "http://127.0.0.1:9/ModelNet10.zip")
    assert main(["-q", "data", "download", "modelnet10", "-o", str(tmp_path)]) == 2
    assert "could not download" in capsys.readouterr().err


@pytest.mark.slow
@needs_data
def test_console_script_zeroshot_on_real_vit_b_32(tmp_path):
    """The 'done when' path: the installed `clip2point` on a ModelNet10 test shape written to .npy."""
    pts, _ = modelnet10_test(1)
    np.save(tmp_path / "shape.npy", pts[0])
    exe = [sys.executable, "-m", "clip2point"]
    out = subprocess.run([*exe, "-q", "zeroshot", str(tmp_path / "shape.npy"), "--class-set", "modelnet10",
                          "--weights", "random", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert len(obj["probs"]) == 10 and "meaningless" in out.stderr
    raw = subprocess.run([*exe, "-q", "zeroshot", str(MN10_TEST), "--index", "0", "--up", "z", "--class-set",
                          "modelnet10", "--weights", "random", "--json"], capture_output=True, text=True, timeout=300)
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["probs"] == pytest.approx(obj["probs"], abs=2e-3)  # z-up file + --up z == y-up npy


# ---------------------------------------------------------------------------------------------
# every user-caused error: exit 2, one line naming the file/option and the fix


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_render_settings_errors_are_one_line(tmp_path, capsys):
    chair = "examples/points/chair.ply"
    for args, needle in ((["--radius", "5"], "--radius must be in (0, 2)"), (["--image-size", "0"], "--image-size must be between 1"),
                         (["--image-size", "100000"], "--image-size must be between 1 and 4096"),
                         (["--radius", "nan"], "--radius"), (["--num-points", "-3"], "--num-points must be ≥ 0")):
        assert main(["render", chair, "-o", str(tmp_path / "out"), *args]) == 2, args
        assert needle in _one_line(capsys)
    assert main(["zeroshot", chair, "--classes", "a,b", "--top-k", "0", *TINY]) == 2
    assert "--top-k" in _one_line(capsys)


def test_outputs_are_checked_before_the_work(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # eval --plot: the plot path fails before the dataset is even opened (that folder does not exist either)
    assert main(["eval", "--dataset", "modelnet10", "--data-dir", str(tmp_path / "none"), "--plot", str(blocker / "cm.png"), *TINY]) == 2
    err = _one_line(capsys)
    assert "cm.png" in err and "is a file, not a folder" in err and "does not exist" not in err
    assert main(["eval", "--dataset", "modelnet10", "--data-dir", str(tmp_path), "--plot", str(tmp_path / "cm.txt"), *TINY]) == 2
    assert "name the figure *.png" in _one_line(capsys)
    assert main(["render", "examples/points/chair.ply", "-o", str(blocker / "views")]) == 2
    assert "not a folder" in _one_line(capsys)
    assert main(["render", "examples/points/chair.ply", "-o", str(blocker)]) == 2
    assert "not a folder" in _one_line(capsys)

    def no_model(*a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr("clip2point.backbone.load_backbone", no_model)
    assert main(["fewshot", "--dataset", "modelnet10", "--data-dir", str(tmp_path), "-o", str(blocker / "run"), *TINY]) == 2
    assert "not a folder" in _one_line(capsys)
    assert not list(tmp_path.glob("**/*.tmp"))


def test_memory_errors_malformed_files_bugs_and_interrupts(tmp_path, capsys, monkeypatch):
    import clip2point.io

    chair = "examples/points/chair.ply"

    def raiser(exc):
        def f(*a, **k):
            raise exc
        return f

    monkeypatch.setattr(clip2point.io, "load_point_cloud", raiser(MemoryError()))
    assert main(["render", chair, "-o", str(tmp_path)]) == 2
    assert "chair.ply: not enough memory to read this file" in _one_line(capsys)
    monkeypatch.setattr(clip2point.io, "load_point_cloud", raiser(IndexError("too many indices for array")))
    assert main(["render", chair, "-o", str(tmp_path)]) == 2
    err = _one_line(capsys)
    assert "chair.ply: could not read this file (IndexError" in err and "malformed" in err
    monkeypatch.setattr(clip2point.io, "load_point_cloud", raiser(PermissionError(13, "Permission denied", chair)))
    assert main(["render", chair, "-o", str(tmp_path)]) == 2
    assert "chair.ply: permission denied" in _one_line(capsys)
    monkeypatch.setattr(clip2point.io, "load_point_cloud", raiser(OSError(40, "Too many levels of symbolic links", chair)))
    assert main(["render", chair, "-o", str(tmp_path)]) == 2
    err = _one_line(capsys)
    assert "symlink loop" in err and "not found" not in err
    monkeypatch.setattr(clip2point.io, "load_point_cloud", raiser(KeyboardInterrupt()))
    assert main(["render", chair, "-o", str(tmp_path)]) == 130
    assert _one_line(capsys) == "clip2point render: interrupted"
    # a bug (not the user's doing) is one line too, exit 1, and asks for --debug; --debug shows the traceback
    import clip2point.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "info", raiser(ZeroDivisionError("division by zero")))
    assert main(["info"]) == 1
    err = _one_line(capsys)
    assert "internal error (ZeroDivisionError: division by zero)" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "info"])


def test_adapter_run_config_and_explicit_model(tmp_path, capsys, monkeypatch):
    import clip2point.cli as cli
    import clip2point.cli.commands as commands
    from clip2point.fewshot.rundir import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"fewshot": {}, "gdpa": {}, "classes": ["a", "b"],
                                                 "backbone": {"model_name": "tiny-ViT-test", "weights_kind": "file",
                                                              "weights_location": "/w/tiny.pt", "paths": "clip+clip"}}))
    seen = {}

    def fake_backbone(args):
        seen.update(model=args.model, weights=args.weights)
        raise ValueError("stop here")

    monkeypatch.setattr(commands, "backbone_from_args", fake_backbone)
    args = cli.build_parser().parse_args(["zeroshot", "x.ply", "--adapter", str(run)])
    with pytest.raises(ValueError):
        commands._adapter_backbone(args, RunFolder(run))
    assert seen == {"model": "tiny-ViT-test", "weights": "/w/tiny.pt"}  # the run's
    args = cli.build_parser().parse_args(["zeroshot", "x.ply", "--adapter", str(run), "--model", "ViT-B-32", "--weights", "random"])
    with pytest.raises(ValueError):
        commands._adapter_backbone(args, RunFolder(run))
    assert seen == {"model": "ViT-B-32", "weights": "random"}  # given explicitly, even when equal to the default
    (run / "config.json").write_text("{not json")
    assert main(["zeroshot", "examples/points/chair.ply", "--adapter", str(run)]) == 2
    err = _one_line(capsys)
    assert "config.json: not valid JSON" in err and "train the run again" in err


def test_adapter_uses_the_runs_precision_unless_given(tmp_path, monkeypatch):
    import clip2point.cli as cli
    import clip2point.cli.commands as commands
    from clip2point.fewshot.rundir import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    backbone = {"model_name": "tiny-ViT-test", "weights_kind": "random", "paths": "clip+clip", "precision": "bf16"}
    (run / "config.json").write_text(json.dumps({"fewshot": {}, "gdpa": {}, "classes": ["a", "b"], "backbone": backbone}))
    seen = {}

    def fake_backbone(args):
        seen["precision"] = args.precision
        raise ValueError("stop here")

    monkeypatch.setattr(commands, "backbone_from_args", fake_backbone)
    for extra, expected in (([], "bf16"), (["--precision", "fp32"], "fp32")):
        args = cli.build_parser().parse_args(["zeroshot", "x.ply", "--adapter", str(run), *extra])
        with pytest.raises(ValueError):
            commands._adapter_backbone(args, RunFolder(run))
        assert seen["precision"] == expected
    del backbone["precision"]  # a run written before the option: the library's default
    (run / "config.json").write_text(json.dumps({"fewshot": {}, "gdpa": {}, "classes": ["a", "b"], "backbone": backbone}))
    args = cli.build_parser().parse_args(["zeroshot", "x.ply", "--adapter", str(run)])
    with pytest.raises(ValueError):
        commands._adapter_backbone(args, RunFolder(run))
    assert seen["precision"] is None


@needs_data
def test_fewshot_disk_full_is_one_line_and_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    run = tmp_path / "run"
    code = main(["-q", "fewshot", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--shots", "1",
                 "--epochs", "1", "--val-per-class", "0", "--limit-test", "10", *TINY, "-o", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("clip2point fewshot: error: ") and "safetensors: cannot write it: disk full" in err[-1]
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# precision (issue 11): --precision on every command that encodes, `info` says what auto picks


def test_precision_option_help_and_info(capsys):
    from clip2point.backbone import resolve_precision
    from clip2point.cli import build_parser

    for cmd in ("zeroshot", "eval", "fewshot", "pretrain"):
        with pytest.raises(SystemExit):
            build_parser(cmd).parse_args([cmd, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--precision {fp32,bf16,auto}" in out and "auto (bf16 where" in out, cmd
    parse = build_parser("eval").parse_args
    assert parse(["eval", "--dataset", "modelnet10", "--data-dir", "d"]).precision == "fp32"  # the default
    assert build_parser("zeroshot").parse_args(["zeroshot", "x.ply"]).precision is None  # fp32, or the run's
    assert main(["info", "--brief"]) == 0
    out = capsys.readouterr().out
    assert f"--precision auto on cpu: {resolve_precision('auto', 'cpu')[1]}" in out


@needs_data
def test_zeroshot_in_bf16_agrees_with_fp32(chair_npy, capsys):
    probs = {}
    for precision in ("fp32", "bf16"):
        assert main(["-q", "zeroshot", str(chair_npy), "--class-set", "modelnet10", "--json", "--no-cache", *TINY,
                     "--precision", precision]) == 0
        probs[precision] = json.loads(capsys.readouterr().out)["probs"]
    assert probs["bf16"] == pytest.approx(probs["fp32"], abs=0.02) and probs["bf16"] != probs["fp32"]


@needs_data
def test_eval_compare_precision_on_real_shapes(capsys):
    base = ["-q", "eval", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--limit", "8",
            "--batch-size", "4", "--compare-precision", *TINY]
    assert main([*base, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)["compare_precision"]
    assert obj["num_shapes"] == 8 and obj["precisions"] == ["fp32", "bf16"]
    assert 0 <= obj["top1_agreement"] <= 1 and obj["disagreements"] == round(8 * (1 - obj["top1_agreement"]))
    assert 0 < obj["max_feature_diff"] < 0.05 and 0.99 < obj["min_cosine"] <= 1.0001
    assert set(obj["encode_s"]) == {"fp32", "bf16"} and obj["reasons"]["bf16"].startswith("bf16")
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "fp32 vs bf16" in out and "top-1 agreement" in out and "min cosine" in out


# ---------------------------------------------------------------------------------------------
# the persistent view-feature cache: --cache-dir / --no-cache, clip2point cache info|clear (issue 11 item 2)


@needs_data
def test_view_cache_options_and_cache_command(tmp_path, capsys):
    cache = tmp_path / "views"
    ev = ["-q", "eval", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--limit", "4", "--json", *TINY]
    assert main([*ev, "--no-cache"]) == 0 and main(["cache", "info", "--cache-dir", str(cache)]) == 0
    first = capsys.readouterr().out.strip().splitlines()
    assert first[-1] == f"view-feature cache: 0 entries, 0.0 MB of 2.1 GB in {cache}"  # --no-cache wrote nothing
    assert main([*ev, "--cache-dir", str(cache)]) == 0 and main([*ev, "--cache-dir", str(cache)]) == 0
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert runs[0]["accuracy"] == runs[1]["accuracy"] and runs[0]["confusion_matrix"] == runs[1]["confusion_matrix"]
    assert runs[0]["view_cache"]["root"] == str(cache) and (runs[0]["view_cache"]["misses"], runs[0]["view_cache"]["written"]) == (4, 4)
    assert (runs[1]["view_cache"]["hits"], runs[1]["view_cache"]["misses"]) == (4, 0)  # the re-run encodes nothing
    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.startswith("view-feature cache: 4 entries")
    assert main(["-q", "fewshot", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--shots", "1",
                 "--epochs", "1", "--val-per-class", "0", "--limit-test", "10", *TINY, "-o", str(tmp_path / "run"),
                 "--cache-dir", str(cache), "--json"]) == 0  # few-shot's 10 views are other entries
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    assert int(capsys.readouterr().out.split()[2].replace(",", "")) > 4
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["cache", "info"]) == 0  # default folder: $CLIP2POINT_CACHE_DIR (set per test by _own_view_cache)
    assert capsys.readouterr().out.endswith(f"in {tmp_path / 'view-cache'}\n")


# ---------------------------------------------------------------------------------------------
# weights import: the authors' released few-shot checkpoint -> a run folder for --adapter (issue 11 item 10)


def test_weights_import_released_checkpoint_then_classify_with_it(tmp_path, capsys, tiny_backbone):
    from test_release_parity import _released_checkpoint  # the released fewshot.py's layout, written like it

    from clip2point.fewshot.rundir import RunFolder

    path, *_ = _released_checkpoint(tmp_path, tiny_backbone)  # ori_model = the tiny model's random CLIP tower
    run = tmp_path / "run"
    args = ["weights", "import", str(path), "-o", str(run), *TINY, "--classes", "chair,table,lamp"]
    assert main(["-q", *args]) == 0
    out = capsys.readouterr().out
    assert f"into {run}/: 3 classes, 10 views, paths depth+clip (ori_model matches tiny-ViT-test" in out
    assert f"--adapter {run}" in out
    folder = RunFolder(run)
    assert folder.classes == ["chair", "table", "lamp"] and folder.config.gate == "none" and folder.depth_encoder_file
    assert main(["-q", "zeroshot", "examples/points/chair.ply", "--adapter", str(run), "--json", "--no-cache"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["classes"] == ["chair", "table", "lamp"] and obj["adapter"] == str(run)
    assert main(["-q", *args]) == 2  # a run is there: one line, and --overwrite replaces it
    assert "already holds a few-shot run" in _one_line(capsys)
    assert main(["-q", *args, "--overwrite", "--dataset", "modelnet10"]) == 0
    capsys.readouterr()
    assert main(["weights", "import", str(tmp_path / "none.pth"), "-o", str(tmp_path / "r2"), *TINY]) == 2
    assert "none.pth: no such file" in _one_line(capsys)
    (tmp_path / "best_eval.pth").write_bytes(b"not a checkpoint")
    assert main(["weights", "import", str(tmp_path / "best_eval.pth"), "-o", str(tmp_path / "r3"), *TINY]) == 2
    assert "best_eval.pth" in _one_line(capsys)
