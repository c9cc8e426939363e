"""Prompt templates (issue 13 item 2) and prompt ensembles (issue 12 item 4): validation, presets,
template files, CLIP's ensembling in the backbone, the classifier and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clip2point.classes import MODELNET10, MODELNET40
from clip2point.cli import main
from clip2point.errors import Clip2PointError
from clip2point.prompts import (
    DEFAULT_TEMPLATE, MAX_TEMPLATE_FILE_BYTES, MAX_TEMPLATES, TEMPLATE_PRESETS, PromptTemplateError, as_templates,
    describe_templates, preset_of, read_template_file, resolve_templates, validate_template,
)
from clip2point.zeroshot import ZeroShotClassifier
from helpers import modelnet10_test, needs_data

TINY = ["--model", "tiny-ViT-test", "--weights", "random"]

# (template, what the message must say) — the first three are the defects of issue 13 item 2
BAD = [
    ("a {} and a {}", "2 replacement fields"),       # was: IndexError inside str.format
    ("{}{1}", "2 replacement fields"),               # was: ValueError
    ("{{}}", "only literal braces"),                 # was: every class got the prompt "{}"
    ("a photo of a chair", "no {} placeholder"),
    ("a {0}", "index or name"),
    ("a {name}", "index or name"),
    ("a {!r}", "conversion"),
    ("a {:>10}", "format spec"),
    ("a {:{}}", "format spec"),
    ("a { and", "unbalanced braces"),
    ("a } and {}", "unbalanced braces"),
    ("", "empty"),
    ("   ", "empty"),
    ("x {}" + "y" * 600, "characters long"),
    (None, "got NoneType"),
    (3, "got int"),
]


@pytest.mark.parametrize(("template", "why"), BAD)
def test_bad_templates_are_one_clear_error(template, why):
    with pytest.raises(PromptTemplateError, match=None) as e:
        validate_template(template)
    msg = str(e.value)
    assert why in msg and 'e.g. "image of a {}"' in msg and "\n" not in msg
    assert isinstance(e.value, Clip2PointError)


@pytest.mark.parametrize("template", ["image of a {}", "{}", "a {} in a video game.", "a {{curly}} {}", "{{{}}}",
                                      "ein Bild von {} – Tiefenkarte"])
def test_good_templates_pass_unchanged(template):
    assert validate_template(template) is template
    assert template.format("chair").count("chair") == 1


def test_presets_are_valid_and_named():
    assert TEMPLATE_PRESETS["clip2point"] == (DEFAULT_TEMPLATE,) == ("image of a {}",)
    assert TEMPLATE_PRESETS["pointclip"] == ("point cloud depth map of a {}.",)
    # CLIP's 7-template ImageNet subset, in the order its forward selection picked them
    assert TEMPLATE_PRESETS["clip"][0] == "itap of a {}." and len(TEMPLATE_PRESETS["clip"]) == 7
    assert len(TEMPLATE_PRESETS["depth"]) >= 4
    for name, templates in TEMPLATE_PRESETS.items():
        assert templates and as_templates(templates) == templates  # valid, no repeats
        assert resolve_templates(name) == templates and resolve_templates(name.upper()) == templates
        assert preset_of(templates) == name
    assert describe_templates(TEMPLATE_PRESETS["clip"]) == "7 templates (preset clip)"
    assert describe_templates(("a {}",)) == "'a {}'"


def test_resolve_templates_kinds(tmp_path):
    assert resolve_templates(None) == (DEFAULT_TEMPLATE,)
    assert resolve_templates("a depth map of a {}") == ("a depth map of a {}",)
    assert resolve_templates(["b {}", "a {}", "b {}"]) == ("b {}", "a {}")  # de-duplicated in order
    f = tmp_path / "mine.txt"
    f.write_text("a {}\n")
    assert resolve_templates(f) == resolve_templates(str(f)) == ("a {}",)
    with pytest.raises(PromptTemplateError, match="neither a template preset .*clip2point, pointclip, depth, clip"):
        resolve_templates("imagenet")
    with pytest.raises(PromptTemplateError, match="does not exist"):
        resolve_templates(str(tmp_path / "missing.txt"))
    with pytest.raises(PromptTemplateError, match="no prompt templates"):
        resolve_templates([])
    with pytest.raises(PromptTemplateError, match="template 2 of 2: .*2 replacement fields"):
        resolve_templates(["a {}", "a {} and a {}"])
    with pytest.raises(PromptTemplateError, match="at most"):
        as_templates([f"{i} {{}}" for i in range(MAX_TEMPLATES + 1)])


def test_template_file_format_and_bad_lines(tmp_path):
    good = tmp_path / "t.txt"
    good.write_bytes("\ufeff# depth prompts\n\n  a depth map of a {}.  \nimage of a {}\n# x\nimage of a {}\nein Bild von {}\n"
                     .encode("utf-8"))
    assert read_template_file(good) == ("a depth map of a {}.", "image of a {}", "ein Bild von {}")
    bad = tmp_path / "bad.txt"
    bad.write_text("# header\nimage of a {}\n\na {} and a {}\n")
    with pytest.raises(PromptTemplateError, match=r"bad\.txt:4: prompt template 'a \{\} and a \{\}' has 2"):
        read_template_file(bad)
    bad.write_text("image of a {}\n{{}}\n")
    with pytest.raises(PromptTemplateError, match=r"bad\.txt:2: .*only literal braces"):
        read_template_file(bad)
    bad.write_bytes(b"image of a {}\nimage of a \xff{}\n")
    with pytest.raises(PromptTemplateError, match=r"bad\.txt:2: not UTF-8"):
        read_template_file(bad)
    bad.write_text("# only comments\n\n")
    with pytest.raises(PromptTemplateError, match="no templates"):
        read_template_file(bad)
    bad.write_text("".join(f"template {i} of a {{}}\n" for i in range(MAX_TEMPLATES + 1)))
    with pytest.raises(PromptTemplateError, match=f"bad.txt:{MAX_TEMPLATES + 1}: more than {MAX_TEMPLATES}"):
        read_template_file(bad)
    bad.write_text("a {}\n" + "#" * MAX_TEMPLATE_FILE_BYTES)
    with pytest.raises(PromptTemplateError, match="bytes; at most"):
        read_template_file(bad)
    with pytest.raises(PromptTemplateError, match="does not exist"):
        read_template_file(tmp_path)  # a folder


def _released_text_features(backbone, classes, template):
    """The text side as it was before ensembles: one template, prompts in chunks of 256."""
    prompts = [template.format(c) for c in classes]
    return torch.cat([backbone.encode_text_tokens(backbone.tokenizer(prompts[i: i + 256])) for i in range(0, len(prompts), 256)])


def test_single_template_is_bit_identical_to_before(tiny_backbone):
    for classes in (MODELNET10, MODELNET40):
        feats = tiny_backbone.text_features(classes, "a depth map of a {}")
        assert torch.equal(feats, _released_text_features(tiny_backbone, classes, "a depth map of a {}"))
        assert tiny_backbone.text_features(classes, ["a depth map of a {}"]) is feats  # same cache entry


def test_ensemble_is_the_normalised_mean_of_single_template_features(tiny_backbone):
    templates = TEMPLATE_PRESETS["clip"]  # 7 × 40 = 280 prompts: more than one text-tower chunk of 256
    ens = tiny_backbone.text_features(MODELNET40, templates)
    singles = torch.stack([_released_text_features(tiny_backbone, MODELNET40, t) for t in templates])
    expected = torch.nn.functional.normalize(singles.mean(dim=0), dim=-1)
    assert ens.shape == (40, tiny_backbone.embed_dim) and ens.dtype == torch.float32
    torch.testing.assert_close(ens, expected, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(ens.norm(dim=-1), torch.ones(40))
    assert not torch.allclose(ens, singles[0], atol=1e-3)  # the ensemble is not just its first template


def test_text_cache_keys_on_the_whole_template_tuple(tiny_backbone):
    classes = ["chair", "table", "lamp"]
    before = len(tiny_backbone._text_cache)
    ab = tiny_backbone.text_features(classes, ("a {}", "the {}"))
    assert tiny_backbone.text_features(classes, ("a {}", "the {}")) is ab
    assert tiny_backbone.text_features(classes, ("a {}", "the {}", "a {}")) is ab  # repeats count once
    a = tiny_backbone.text_features(classes, "a {}")
    ba = tiny_backbone.text_features(classes, ("the {}", "a {}"))
    assert ba is not ab and a is not ab and len(tiny_backbone._text_cache) == before + 3
    torch.testing.assert_close(ba, ab, atol=1e-6, rtol=1e-5)  # same mean, another key
    assert tiny_backbone.text_features([], ("a {}", "the {}")).shape == (0, tiny_backbone.embed_dim)


@pytest.mark.parametrize(("template", "why"), BAD[:3])
def test_library_entry_points_refuse_bad_templates(tiny_backbone, template, why):
    with pytest.raises(PromptTemplateError, match=why.replace("{", r"\{").replace("}", r"\}")):
        tiny_backbone.text_features(["chair", "table"], template)
    with pytest.raises(PromptTemplateError, match="template 2 of 2"):
        tiny_backbone.text_features(["chair", "table"], ["image of a {}", template])
    with pytest.raises(PromptTemplateError):
        ZeroShotClassifier(tiny_backbone, ["chair", "table"], template)
    clf = ZeroShotClassifier(tiny_backbone, ["chair", "table"])
    feats = clf.text_features
    with pytest.raises(PromptTemplateError):
        clf.set_prompts(["sofa", "bed"], template)
    assert clf.classes == ["chair", "table"] and clf.templates == (DEFAULT_TEMPLATE,) and clf.text_features is feats


@needs_data
def test_classifier_with_an_ensemble(tiny_backbone):
    shapes = modelnet10_test(2)[0]
    clf = ZeroShotClassifier(tiny_backbone, MODELNET10, TEMPLATE_PRESETS["depth"])
    assert clf.templates == TEMPLATE_PRESETS["depth"] and clf.template == clf.templates
    assert clf.text_features is tiny_backbone.text_features(MODELNET10, TEMPLATE_PRESETS["depth"])
    res = clf.predict(shapes)
    assert res.logits.shape == (2, 10) and torch.isfinite(res.logits).all()
    single = ZeroShotClassifier(tiny_backbone, MODELNET10, None)
    assert single.templates == (DEFAULT_TEMPLATE,) and single.template == DEFAULT_TEMPLATE
    assert not torch.allclose(single.predict(shapes).logits, res.logits)
    clf.set_prompts(["chair", "table"])  # keeps the ensemble
    assert clf.templates == TEMPLATE_PRESETS["depth"] and clf.text_features.shape[0] == 2


@pytest.fixture()
def chair_npy(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIP2POINT_CACHE_DIR", str(tmp_path / "view-cache"))
    path = tmp_path / "chair.npy"
    np.save(path, modelnet10_test(1)[0][0])
    return path


@needs_data
def test_cli_templates_preset_and_file(chair_npy, tmp_path, capsys):
    assert main(["-q", "zeroshot", str(chair_npy), "--classes", "chair,table,lamp", "--templates", "clip", "--json", *TINY]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert obj["templates"] == list(TEMPLATE_PRESETS["clip"])
    # the same scores as the library with the same ensemble (random weights are seeded: the same tiny model)
    from clip2point.backbone import load_backbone

    clf = ZeroShotClassifier(load_backbone("tiny-ViT-test", weights="random"), ["chair", "table", "lamp"], TEMPLATE_PRESETS["clip"])
    lib = clf.predict(np.load(chair_npy)).probs[0].tolist()
    assert obj["probs"] == pytest.approx(lib, abs=1e-5)
    f = tmp_path / "mine.txt"
    f.write_text("# mine\na depth map of a {}\n\nimage of a {}\n")
    assert main(["-q", "zeroshot", str(chair_npy), "--classes", "chair,table", "--templates", str(f), "--json", *TINY]) == 0
    assert json.loads(capsys.readouterr().out.strip())["templates"] == ["a depth map of a {}", "image of a {}"]
    assert main(["-q", "zeroshot", str(chair_npy), "--classes", "chair,table", "--json", *TINY]) == 0
    assert json.loads(capsys.readouterr().out.strip())["templates"] == [DEFAULT_TEMPLATE]
    assert main(["-q", "zeroshot", str(chair_npy), "--classes", "chair,table", "--templates", "depth", *TINY]) == 0
    assert f"template {len(TEMPLATE_PRESETS['depth'])} templates (preset depth)" in capsys.readouterr().out


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--template", "a {} and a {}", "--template: prompt template 'a {} and a {}' has 2 replacement fields"),
    ("--template", "{}{1}", "--template: prompt template '{}{1}' has 2 replacement fields"),
    ("--template", "{{}}", "--template: prompt template '{{}}' has only literal braces"),
    ("--template", "a chair", "no {} placeholder"),
    ("--templates", "imagenet", "--templates imagenet: 'imagenet' is neither a template preset"),
    ("--templates", "missing/t.txt", "--templates missing/t.txt: template file missing/t.txt does not exist"),
])
def test_cli_bad_templates_are_one_line_before_any_work(tmp_path, capsys, flag, value, expected):
    missing_input = tmp_path / "never-read.npy"  # templates are checked before the inputs and the model
    code = main(["zeroshot", str(missing_input), "--classes", "chair,table", flag, value, *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_template_file_errors_name_the_line_and_flags_exclude_each_other(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("image of a {}\n# fine\n{}{1}\n")
    assert main(["zeroshot", str(tmp_path / "x.npy"), "--classes", "a,b", "--templates", str(f), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{f}:3: prompt template '{{}}{{1}}' has 2 replacement fields" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["zeroshot", "x.npy", "--classes", "a,b", "--template", "a {}", "--templates", "clip"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["zeroshot", "x.npy", "--adapter", str(tmp_path), "--templates", "clip"]) == 2
    assert "--templates does not apply with --adapter" in capsys.readouterr().err
    help_text = " ".join(subprocess_help().split())
    assert "--templates PRESET|FILE" in help_text and "clip2point, pointclip, depth, clip" in help_text


def subprocess_help() -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "clip2point", "zeroshot", "--help"], capture_output=True, text=True).stdout
