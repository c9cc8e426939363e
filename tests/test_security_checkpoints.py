"""Checkpoints cannot run code, and run folders cannot point outside themselves.

Written as an attacker would: every payload here WOULD write a marker file if it were loaded the
unsafe way (the control tests prove it, in child processes), and is sent through every door a
weights file comes in by — the library (``load_state_dict_file``, ``load_backbone(weights=…)``,
``load_depth_encoder``), ``$CLIP2POINT_WEIGHTS``, files auto-discovered in the weights folder, the
CLI (``zeroshot --weights/--depth-encoder/--adapter``, ``eval``, ``pretrain --weights/--resume``,
``weights export``, ``fewshot --resume``) as subprocesses, and the app's ``/load_depth_encoder``
through gradio_client. The marker must never appear; the CLI must exit 2 with one clear line; the
app must keep serving.

Payloads, built at test time (no blobs):

* TorchScript archives whose ``__setstate__`` (run by ``torch.jit.load``) calls a custom operator
  ``c2p_test::touch(path)`` that creates the marker. The operator is registered with
  ``torch.library`` in this process and in every child (``OP_SRC``), so the payload is live
  wherever a load could happen. Two variants: a tuple state and a dict state (the latter would get
  past a reader that only looked at the state's type).
* Classic pickles whose ``__reduce__`` calls ``open(marker, "a")``: a raw pickle ``.pt``, and
  ``torch.save`` zips ``.pth``/``.bin`` (the object nested in a state dict).
* A pre-training run whose ``checkpoints/last.json`` names its tensors by absolute path, ``../``
  or a symlink leaving the folder; a few-shot run folder whose ``config.json`` points the
  weights or the depth encoder at a payload, or is not JSON at all.
"""

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from clip2point.backbone import load_backbone, load_depth_encoder
from clip2point.errors import CheckpointError
from clip2point.checkpoints import load_state_dict_file
from helpers import DATA, needs_data

#: Registers ``c2p_test::touch(str path) -> int`` (creates the file) once per process.
OP_SRC = textwrap.dedent('''
    import torch as _c2p_torch
    try:
        _c2p_torch.ops.c2p_test.touch
    except (AttributeError, RuntimeError):
        _C2P_TEST_LIB = _c2p_torch.library.Library("c2p_test", "DEF")
        _C2P_TEST_LIB.define("touch(str path) -> int")

        def _c2p_touch(path):
            open(path, "a").close()
            return 1

        _C2P_TEST_LIB.impl("touch", _c2p_touch, "CompositeExplicitAutograd")
''')
_OP_NAMESPACE: dict = {}  # keeps the Library object (and so the operator) alive in this process

TINY = ["--model", "tiny-ViT-test"]
TS_PAYLOADS = ("ts_tuple_state.pt", "ts_dict_state.pth")
PICKLE_PAYLOADS = ("reduce_raw.pt", "reduce_torchsave.pth", "reduce_nested.bin")
PAYLOADS = TS_PAYLOADS + PICKLE_PAYLOADS


class TupleStateHook(nn.Module):
    """TorchScript module whose load-time ``__setstate__`` calls the marker operator (tuple state)."""

    marker: str
    hits: int

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.hits = 0
        self.weight = nn.Parameter(torch.ones(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return (self.marker, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        self.marker = state[0]
        self.weight = state[1]
        self.training = state[2]
        self.hits = torch.ops.c2p_test.touch(self.marker)


class DictStateHook(nn.Module):
    """Same, but the pickled state is a plain dict (looks like ordinary module attributes)."""

    marker: str
    hits: int

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.hits = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0

    @torch.jit.export
    def __getstate__(self) -> dict[str, str]:
        return {"marker": self.marker}

    @torch.jit.export
    def __setstate__(self, state: dict[str, str]) -> None:
        self.marker = state["marker"]
        self.training = False
        self._is_full_backward_hook = None
        self.hits = torch.ops.c2p_test.touch(self.marker)


class Touch:
    """A classic pickle payload: unpickling it calls ``open(marker, "a")``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "a"))


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def payloads(tmp_path_factory, markers) -> dict[str, Path]:
    """name → payload file; payload ``name`` writes ``markers/name`` when loaded the unsafe way."""
    exec(OP_SRC, _OP_NAMESPACE)
    out = tmp_path_factory.mktemp("payloads")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.* deprecation notices
        for name, cls in zip(TS_PAYLOADS, (TupleStateHook, DictStateHook)):
            torch.jit.save(torch.jit.script(cls(str(markers / name))), out / name)
    with open(out / PICKLE_PAYLOADS[0], "wb") as f:
        pickle.dump({"visual.proj": Touch(str(markers / PICKLE_PAYLOADS[0]))}, f, protocol=2)
    torch.save({"state_dict": {"w": torch.zeros(2), "x": Touch(str(markers / PICKLE_PAYLOADS[1]))}}, out / PICKLE_PAYLOADS[1])
    torch.save({"model": {"w": torch.zeros(2), "nested": [Touch(str(markers / PICKLE_PAYLOADS[2]))]}}, out / PICKLE_PAYLOADS[2])
    assert not any(markers.iterdir()), "building the payloads must not trigger them"
    return {name: out / name for name in PAYLOADS}


@pytest.fixture(autouse=True)
def _no_marker_ever(request):
    """After every test of this module, no payload has fired (the control tests use their own folder)."""
    yield
    if "markers" in request.fixturenames:
        fired = sorted(p.name for p in request.getfixturevalue("markers").iterdir())
        assert not fired, f"payload code ran: {fired}"


def _child(code: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with the marker operator registered."""
    full = {k: v for k, v in os.environ.items() if k not in ("CLIP2POINT_WEIGHTS",)}
    full.update({"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"})
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", OP_SRC + "\n" + code], capture_output=True, text=True,
                          timeout=timeout, env=full, cwd=cwd)


def _cli(args: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return _child(f"from clip2point.cli import main\nraise SystemExit(main({['-q', *args]!r}))", env, cwd)


def _here(args: list[str], capsys) -> subprocess.CompletedProcess:
    """The same CLI in this process (the marker operator is registered here too): for the variants."""
    from clip2point.cli import main

    capsys.readouterr()
    code = main(["-q", *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _assert_one_line_refusal(out: subprocess.CompletedProcess, *needles: str, only_line: bool = True) -> str:
    """Exit status 2, no traceback, one error line (the whole of stderr unless ``only_line`` is False) with the needles."""
    err = out.stderr.strip()
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], err[-3000:])
    lines = err.splitlines()
    errors = [ln for ln in lines if ": error: " in ln]
    assert "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0], err
    if only_line:
        assert len(lines) == 1, err
    for needle in needles:
        assert needle in errors[0], (needle, err)
    return errors[0]


# ---------------------------------------------------------------------------------------------
# controls: the payloads are real


@pytest.mark.parametrize("name", TS_PAYLOADS)
def test_control_torch_jit_load_runs_the_torchscript_payload(payloads, tmp_path, name):
    """torch.jit.load (what clip2point used to call) compiles the archive and runs its __setstate__."""
    marker = tmp_path / "fired"
    archive = tmp_path / name
    shutil.copy(payloads[name], archive)
    # the payload's marker path is inside the archive; point it at this test's own marker by rebuilding
    exec(OP_SRC, _OP_NAMESPACE)
    cls = TupleStateHook if "tuple" in name else DictStateHook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(cls(str(marker))), archive)
    assert not marker.exists()
    out = _child(f"import torch\ntorch.jit.load({str(archive)!r})")
    assert out.returncode == 0, out.stderr[-2000:]
    assert marker.exists(), "the control payload did not fire under torch.jit.load"


@pytest.mark.parametrize("name", PICKLE_PAYLOADS)
def test_control_unrestricted_unpickling_runs_the_pickle_payload(tmp_path, name):
    marker = tmp_path / "fired"
    path = tmp_path / name
    if name == "reduce_raw.pt":
        with open(path, "wb") as f:
            pickle.dump({"visual.proj": Touch(str(marker))}, f, protocol=2)
        code = f"import pickle\npickle.load(open({str(path)!r}, 'rb'))"
    else:
        torch.save({"state_dict": {"x": Touch(str(marker))}}, path)
        code = f"import torch\ntorch.load({str(path)!r}, weights_only=False)"
    out = _child(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert marker.exists(), "the control payload did not fire under plain unpickling"


# ---------------------------------------------------------------------------------------------
# the library


@pytest.mark.parametrize("name", PAYLOADS)
def test_library_refuses_every_payload(payloads, markers, tiny_backbone, name):
    path = payloads[name]
    with pytest.raises(CheckpointError, match="refused") as err:
        load_state_dict_file(path)
    assert str(path) in str(err.value)
    if name in TS_PAYLOADS:
        assert "TorchScript" in str(err.value) and "never runs" in str(err.value)
    else:
        assert "pickled Python objects" in str(err.value)
    with pytest.raises(CheckpointError, match="refused"):
        load_backbone("tiny-ViT-test", weights=str(path))
    with pytest.raises(CheckpointError, match="refused"):
        load_depth_encoder(path, tiny_backbone.model.visual)
    assert not any(markers.iterdir())


def test_torch_jit_load_is_never_called(payloads, markers, monkeypatch):
    def boom(*a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", boom)
    for name in TS_PAYLOADS:
        with pytest.raises(CheckpointError, match="refused"):
            load_state_dict_file(payloads[name])


@pytest.mark.parametrize("name", ["ts_tuple_state.pt", "reduce_raw.pt"])
def test_environment_variable_and_weights_folder_are_covered(payloads, markers, tmp_path, monkeypatch, name):
    monkeypatch.setenv("CLIP2POINT_WEIGHTS", str(payloads[name]))
    with pytest.raises(CheckpointError, match="refused"):
        load_backbone("tiny-ViT-test")
    monkeypatch.delenv("CLIP2POINT_WEIGHTS")
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(payloads[name], folder / f"tiny-ViT-test{Path(name).suffix}")  # auto-discovered by name
    monkeypatch.setattr("clip2point.weights.weights_dirs", lambda: [folder])
    with pytest.raises(CheckpointError, match="refused"):
        load_backbone("tiny-ViT-test")


def _pretrain_run(root: Path, tensors: str) -> Path:
    """A pre-training run folder whose checkpoints/last.json names its tensors as ``tensors``."""
    from clip2point.pretrain.trainer import CHECKPOINT_FORMAT

    run = root / "run"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    meta = {"format": CHECKPOINT_FORMAT, "step": 1, "tensors": tensors, "optimizer": {}, "scheduler": {}, "rng": {},
            "config": {"model_name": "tiny-ViT-test"}}
    (run / "checkpoints" / "last.json").write_text(json.dumps(meta))
    return run


def _escape(kind: str, root: Path, payload: Path) -> str:
    """The "tensors" entry of each attack: absolute, ../, a symlink leaving the folder, inside but a payload."""
    if kind == "absolute":
        return str(payload)
    if kind == "dotdot":
        shutil.copy(payload, root / payload.name)
        return f"../../{payload.name}"
    if kind == "symlink":
        (root / "run" / "checkpoints").mkdir(parents=True, exist_ok=True)
        (root / "run" / "checkpoints" / "step_00000001.safetensors").symlink_to(payload)
        return "step_00000001.safetensors"
    (root / "run" / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copy(payload, root / "run" / "checkpoints" / payload.name)
    return payload.name


ESCAPES = ("absolute", "dotdot", "symlink", "inside")


@pytest.mark.parametrize("kind", ESCAPES)
def test_pretrain_checkpoint_index_cannot_point_outside_its_folder(payloads, markers, tmp_path, kind):
    from clip2point.pretrain.trainer import export_depth_encoder, read_checkpoint

    root = tmp_path / "attack"
    root.mkdir()
    run = _pretrain_run(root, _escape(kind, root, payloads["ts_tuple_state.pt"]))
    expected = "TorchScript" if kind == "inside" else "inside the folder" if kind != "symlink" else "outside the folder"
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(run / "checkpoints" / "last.json")
    with pytest.raises(CheckpointError, match=expected):
        export_depth_encoder(run, tmp_path / "out.safetensors", "last")
    assert not (tmp_path / "out.safetensors").exists()


def test_resolve_inside_rules(tmp_path):
    from clip2point.checkpoints import resolve_inside

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.safetensors").write_bytes(b"x")
    assert resolve_inside(tmp_path, "sub/a.safetensors") == (tmp_path / "sub" / "a.safetensors").resolve()
    for bad in ("/etc/passwd", "../x", "sub/../../x", "", None, 3, "~/x"):
        with pytest.raises(CheckpointError):
            resolve_inside(tmp_path, bad)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(CheckpointError, match="symlink loop"):
        resolve_inside(tmp_path, "loop")
    (tmp_path / "out").symlink_to("/etc")
    with pytest.raises(CheckpointError, match="outside the folder"):
        resolve_inside(tmp_path, "out/passwd")


def test_pair_cache_index_cannot_point_outside_its_folder(payloads, markers, tmp_path):
    from clip2point.pretrain.data import PAIRS_FORMAT, PairDataset, build_pair_cache

    cache = tmp_path / "pairs"
    cache.mkdir()
    index = {"format": PAIRS_FORMAT, "source": {}, "shard_size": 1, "keep_images": True, "feature_key": "k",
             "num_items": 1, "complete": True,
             "shards": [{"file": str(payloads["ts_tuple_state.pt"]), "items": ["a"], "names": ["a"], "count": 1,
                         "feature_key": "other", "has_images": True}]}
    (cache / "index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="inside the folder"):
        PairDataset.from_cache(cache)

    class Encoder:
        key = "k2"

        def __call__(self, images):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(CheckpointError, match="inside the folder"):  # re-encoding would also have written there
        build_pair_cache(cache, None, Encoder())
    assert payloads["ts_tuple_state.pt"].read_bytes()[:2] == b"PK"  # untouched


# ---------------------------------------------------------------------------------------------
# the command line, as subprocesses with the marker operator registered


@pytest.fixture(scope="module")
def shape_npy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shape") / "blob.npy"
    np.save(path, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    return path


@pytest.mark.parametrize("option, name, where", [
    ("--weights", "ts_tuple_state.pt", "child"), ("--depth-encoder", "reduce_raw.pt", "child"),
    ("--weights", "reduce_torchsave.pth", "here"), ("--depth-encoder", "ts_dict_state.pth", "here")])
def test_cli_zeroshot_weights_and_depth_encoder(payloads, markers, shape_npy, capsys, option, name, where):
    args = ["zeroshot", str(shape_npy), "--classes", "chair,table", *TINY]
    args += ["--weights", str(payloads[name])] if option == "--weights" else ["--weights", "random", option, str(payloads[name])]
    _assert_one_line_refusal(_cli(args) if where == "child" else _here(args, capsys), "refused", name)


def test_cli_environment_variable_and_weights_folder(payloads, markers, shape_npy, tmp_path):
    base = ["zeroshot", str(shape_npy), "--classes", "chair,table", *TINY]
    _assert_one_line_refusal(_cli(base, env={"CLIP2POINT_WEIGHTS": str(payloads["reduce_raw.pt"])}), "refused")
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(payloads["ts_tuple_state.pt"], folder / "tiny-ViT-test.pt")
    _assert_one_line_refusal(_cli(base, env={"CLIP2POINT_WEIGHTS_DIR": str(folder)}), "refused", "tiny-ViT-test.pt")


@needs_data
def test_cli_eval_weights(payloads, markers):
    out = _cli(["eval", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--limit", "2", *TINY,
                "--weights", str(payloads["ts_tuple_state.pt"])])
    _assert_one_line_refusal(out, "refused", "TorchScript")


def test_cli_pretrain_weights(payloads, markers, tmp_path):
    out = _cli(["pretrain", "--meshes", str(tmp_path), *TINY, "--weights", str(payloads["ts_dict_state.pth"]),
                "--steps", "1", "--batch-size", "2", "-o", str(tmp_path / "run")])
    _assert_one_line_refusal(out, "refused", "ts_dict_state.pth")


@pytest.mark.parametrize("kind", ESCAPES)
def test_cli_pretrain_resume_and_weights_export(payloads, markers, tmp_path, capsys, kind):
    root = tmp_path / "attack"
    root.mkdir()
    run = _pretrain_run(root, _escape(kind, root, payloads["ts_tuple_state.pt"]))
    cli = _cli if kind == "absolute" else lambda args: _here(args, capsys)  # one fresh process per door is enough
    if kind != "inside":  # (inside the folder, the tensors are only read after the pair cache: see the library test)
        _assert_one_line_refusal(cli(["pretrain", "--resume", *TINY, "--weights", "random", "-o", str(run)]), "refused")
    exported = tmp_path / "depth.safetensors"
    _assert_one_line_refusal(cli(["weights", "export", str(run), "-o", str(exported), "--checkpoint", "last"]), "refused")
    assert not exported.exists()


def _tampered_fewshot_run(root: Path, backbone: dict) -> Path:
    run = root / "fewshot-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"fewshot": {}, "gdpa": {}, "classes": ["a", "b"], "backbone": backbone}))
    return run


def test_cli_zeroshot_adapter_with_a_tampered_run_config(payloads, markers, shape_npy, tmp_path, capsys):
    run = _tampered_fewshot_run(tmp_path, {"model_name": "tiny-ViT-test", "weights_kind": "file",
                                           "weights_location": str(payloads["ts_tuple_state.pt"]), "paths": "clip+clip"})
    args = ["zeroshot", str(shape_npy), "--adapter", str(run)]
    _assert_one_line_refusal(_cli(args), "refused", "ts_tuple_state.pt")
    (run / "config.json").write_text(json.dumps({"fewshot": {}, "gdpa": {}, "classes": ["a"], "backbone": {
        "model_name": "tiny-ViT-test", "weights_kind": "random", "weights_location": "", "paths": "depth+clip",
        "depth_encoder": str(payloads["reduce_nested.bin"])}}))
    _assert_one_line_refusal(_here(args, capsys), "refused", "reduce_nested.bin")
    (run / "config.json").write_text('{"backbone": {"model_name": ')  # cut short
    _assert_one_line_refusal(_here(args, capsys), "config.json", "not valid JSON")
    (run / "config.json").write_text('{"backbone": {"model_name": 7, "depth_encoder": ["x"]}}')
    _assert_one_line_refusal(_here(args, capsys), "wrong type")
    (run / "config.json").write_text('[1, 2]')
    _assert_one_line_refusal(_here(args, capsys), "not a JSON object")


@needs_data
def test_cli_fewshot_resume(payloads, markers, tmp_path, capsys):
    """A real few-shot run, then --resume with a payload as depth encoder, and with its checkpoints swapped for payloads."""
    from clip2point.cli import main

    args = ["fewshot", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--shots", "1", "--epochs", "1",
            "--val-per-class", "0", "--limit-test", "10", *TINY, "--weights", "random", "-o", str(tmp_path / "run")]
    assert main(["-q", *args]) == 0
    out = _cli([*args, "--resume", "--epochs", "2", "--depth-encoder", str(payloads["ts_tuple_state.pt"])])
    _assert_one_line_refusal(out, "refused", "ts_tuple_state.pt", only_line=False)  # (+ the random-weights warning)
    for name in ("last.safetensors", "features.safetensors", "adapter.safetensors"):
        shutil.copy(payloads["ts_tuple_state.pt"], tmp_path / "run" / name)
    out = _here([*args, "--resume", "--epochs", "2"], capsys)
    assert "Traceback" not in out.stderr
    assert out.returncode in (0, 2), out.stderr[-2000:]  # refused, or the damaged checkpoint was rebuilt
    if out.returncode == 2:
        _assert_one_line_refusal(out, "last.safetensors", only_line=False)


# ---------------------------------------------------------------------------------------------
# the app, through gradio_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_client():
    from gradio_client import Client

    from ui.app import build_app
    from ui.session import ModelRegistry

    demo = build_app("tiny-ViT-test", "random", "cpu", registry=ModelRegistry())
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


@pytest.mark.parametrize("name", PAYLOADS)
def test_app_depth_encoder_upload_refuses_payloads_and_keeps_serving(payloads, markers, app_client, name):
    from gradio_client import handle_file

    from ui.session import example_path

    app_client.predict("bottle", api_name="/load_example")
    out = app_client.predict(handle_file(str(payloads[name])), "bottle, cup", "image of a {}", 2, api_name="/load_depth_encoder")
    status, encoder = out[0], out[-1]
    assert "refused" in status and encoder == "clip", status
    assert not any(markers.iterdir())
    probs = app_client.predict(handle_file(str(example_path("sofa", "points"))), "sofa, chair", api_name="/classify")
    assert set(probs) == {"sofa", "chair"} and abs(sum(probs.values()) - 1) < 1e-5
