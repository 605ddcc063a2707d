"""A model file is data: names that try to break out of generated C++ never become code.

The validator keeps names to a plain alphabet (tests/host/test_format.py); the code generator
escapes on its own as well, so these tests give it models that bypass the validator."""
import dataclasses
import json
import re
import subprocess

import pytest

from sentei.errors import ModelFormatError
from sentei.host.data import camvid
from sentei.host.modelfile import schema as F
from sentei.overlay import codegen, csim
from tests.overlay.csim_models import tiny

# one payload per way out of a `//` comment or a "..." literal of C++
PAYLOADS = (
    "a\n#error INJECTED_NEWLINE\n//",            # a newline ends the comment
    "b\\",                                        # a backslash continues the comment onto code
    "c */ #error INJECTED_BLOCK /*",              # block-comment markers
    'd"; int INJECTED_QUOTE = 1; const char* e="',  # ends the string literal
    "e??/",                                       # trigraph for a backslash
    "f\r#error INJECTED_CR",                      # carriage return
    "g\u2028\ud800\U0001F600",                    # line separator, lone surrogate, non-BMP
)


def hostile(names):
    model = tiny()
    layers = [dataclasses.replace(layer, name=name) for layer, name in zip(model.layers, names)]
    return dataclasses.replace(model, layers=layers, name="m\n#error INJECTED_MODEL")


@pytest.mark.parametrize("start", [0, 4])
def test_hostile_layer_names_stay_inside_comments_and_literals(start):
    model = tiny()
    names = [PAYLOADS[(start + n) % len(PAYLOADS)] for n in range(len(model.layers))]
    files = codegen.render(codegen.network_facts(hostile(names)))
    for name in ("network_config.h", "network.h"):
        for line in files[name].splitlines():
            # a payload shows only inside a comment or the names' literal, never starts code
            assert not line.lstrip().startswith("#error"), line
            assert "INJECTED" not in line or line.lstrip().startswith("///") or "layer_names[" in line, line
        assert "\\\n" not in files[name] and "??/" not in files[name] and "\r" not in files[name]
    assert [layer["name"] for layer in json.loads(files["network.json"])["layers"]] == names
    literal = re.search(r"layer_names\[num_layers\] = \{(.*)\};", files["network_config.h"]).group(1)
    strings = re.findall(r'"((?:[^"\\]|\\[0-7]{3})*)"', literal)
    assert len(strings) == len(names)
    for text, name in zip(strings, names):  # the literal decodes back to the name's bytes
        decoded = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text).encode("latin-1")
        assert decoded == name.encode("utf-8", "backslashreplace")


def test_hostile_names_compile_to_the_same_code():
    """g++ sees the generated header with every payload as a layer name: it compiles, and the
    injected declaration does not exist (a reference to it fails to compile)."""
    model = tiny()
    names = [PAYLOADS[n % len(PAYLOADS)] for n in range(len(model.layers))]
    files = codegen.render(codegen.network_facts(hostile(names)))
    cxx, inc = csim.find_compiler(), csim.hls_include_dir()
    src = str(codegen.Path(codegen.__file__).resolve().parent / "hls")
    for probe, ok in (("", True), ("int probe() { return INJECTED_QUOTE; }\n", False)):
        code = files["network_config.h"] + probe
        run = subprocess.run([cxx, "-std=c++14", "-fsyntax-only", "-I", src, "-I", str(inc), "-x", "c++", "-"],
                             input=code, capture_output=True, text=True, timeout=120)
        assert (run.returncode == 0) == ok, run.stderr[-2000:]


@pytest.mark.parametrize("name", PAYLOADS + ("", "x" * 65, "-leading", "has space", "semi;colon", "<b>", "`tick`"))
def test_the_validator_refuses_unsafe_model_and_layer_names(name, tmp_path):
    model = tiny()
    for bad in (dataclasses.replace(model, name=name),
                dataclasses.replace(model, layers=[dataclasses.replace(model.layers[0], name=name)]
                                    + list(model.layers[1:]))):
        with pytest.raises(ModelFormatError, match="is not a valid name") as info:
            F.save(bad, tmp_path / "m.sentei")
        message = str(info.value)
        assert "\n" not in message and "\r" not in message and "\x1b" not in message
        assert not (tmp_path / "m.sentei").exists()


@pytest.mark.parametrize("name", ["Sky\x1b[2J", "<script>", "a|b", "Road\n", "*bold*", "[x](y)", ""])
def test_the_validator_refuses_unsafe_class_names(name, tmp_path):
    model = tiny()
    names = list(model.class_names)
    names[1] = name
    with pytest.raises(ModelFormatError, match=r"class_names\[1\]"):
        F.save(dataclasses.replace(model, class_names=tuple(names)), tmp_path / "m.sentei")


def test_a_file_with_a_hostile_name_does_not_load(tmp_path):
    """The reader validates what it reads: a crafted file (written around the writer's checks)
    is refused with one line that shows the name escaped."""
    from tests.host.conftest import patch_header

    path = tmp_path / "m.sentei"
    F.save(tiny(), path)
    path.write_bytes(patch_header(path.read_bytes(), lambda h: h["layers"][1].update(name="x\n#error INJECTED\n//")))
    with pytest.raises(ModelFormatError, match=r"layers\[1\]\.name: 'x\\n#error"):
        F.load(path)


def test_valid_names_pass():
    for name in ("conv1", "sentei-camvid-fw90", "fw90-fast.v2", "a+b_c"):
        F.check_name(name, "name")
    for name in camvid.CLASSES + ("Traffic light", "Column_Pole", "Road (marked)"):
        F.check_name(name, "class", F.CLASS_NAME_PATTERN, F.CLASS_NAME_RULE)
