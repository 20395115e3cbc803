"""Options from the command line, ini and the marker, and their precedence:
command line > tokrate.run() arguments > @pytest.mark.tokrate > ini > default."""

from __future__ import annotations

import json
from typing import Any

import pytest

DUMP_SETTINGS = """
import json
import pytest

{marker}
def test_settings(tokrate):
    cfg = tokrate.session.config
    data = {{
        "settings": tokrate.settings().to_dict(),
        "host": cfg.host,
        "backend": cfg.backend,
        "models": [[m.name, m.backend] for m in cfg.models],
    }}
    with open("settings.json", "w") as fh:
        json.dump(data, fh)
"""


def settings_of(
    pytester: pytest.Pytester, *args: str, ini: str = "", marker: str = ""
) -> dict[str, Any]:
    """Resolve the settings a tokrate test sees, without running the model."""
    if ini:
        pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile(DUMP_SETTINGS.format(marker=marker))
    result = pytester.runpytest("--tokrate-model=smollm2", *args)
    result.assert_outcomes(passed=1)
    data: dict[str, Any] = json.loads((pytester.path / "settings.json").read_text())
    return data


def test_defaults(pytester: pytest.Pytester) -> None:
    data = settings_of(pytester)
    s = data["settings"]
    assert (s["rounds"], s["warmup"], s["cache"], s["timeout_s"]) == (5, 1, "bust", 120.0)
    assert s["options"] == {"num_predict": 64, "num_ctx": 2048, "temperature": 0.0, "seed": 42}
    assert data["backend"] == "auto"
    assert data["models"] == [["smollm2", "embedded"]]
    assert data["host"] is None


def test_every_command_line_option(pytester: pytest.Pytester) -> None:
    data = settings_of(
        pytester,
        "--tokrate-rounds=3",
        "--tokrate-warmup=0",
        "--tokrate-num-predict=12",
        "--tokrate-num-ctx=512",
        "--tokrate-timeout=9.5",
        "--tokrate-cache=allow",
        "--tokrate-option=num_thread=1",
        "--tokrate-option",
        'stop=["\\n"]',
        "--tokrate-backend=embedded",
        "--tokrate-host=http://127.0.0.1:9",
    )
    s = data["settings"]
    assert (s["rounds"], s["warmup"], s["cache"], s["timeout_s"]) == (3, 0, "allow", 9.5)
    assert s["options"]["num_predict"] == 12
    assert s["options"]["num_ctx"] == 512
    assert s["options"]["num_thread"] == 1
    assert s["options"]["stop"] == ["\n"]
    assert data["backend"] == "embedded"
    assert data["host"] == "http://127.0.0.1:9"


def test_every_ini_option(pytester: pytest.Pytester) -> None:
    data = settings_of(
        pytester,
        ini="""
tokrate_rounds = 2
tokrate_warmup = 3
tokrate_num_predict = 7
tokrate_num_ctx = 256
tokrate_timeout = 30
tokrate_cache = allow
tokrate_backend = embedded
tokrate_host = 127.0.0.1:9
tokrate_options =
    num_thread = 1
    # comments and blank lines are skipped

    temperature = 0.5
""",
    )
    s = data["settings"]
    assert (s["rounds"], s["warmup"], s["cache"], s["timeout_s"]) == (2, 3, "allow", 30.0)
    assert s["options"] == {
        "num_predict": 7,
        "num_ctx": 256,
        "temperature": 0.5,
        "seed": 42,
        "num_thread": 1,
    }
    assert data["backend"] == "embedded"
    assert data["host"] == "127.0.0.1:9"


def test_model_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntokrate_model = smollm2\n")
    pytester.makepyfile("def test_m(tokrate):\n    assert tokrate.model == 'smollm2'\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_command_line_model_overrides_ini(pytester: pytest.Pytester, smollm2_gguf: Any) -> None:
    pytester.makeini("[pytest]\ntokrate_model = no-such-file.gguf\n")
    pytester.makepyfile("def test_m(tokrate):\n    assert tokrate.model.endswith('.gguf')\n")
    pytester.runpytest(f"--tokrate-model={smollm2_gguf}").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("ini", "marker", "cli", "expected"),
    [
        ("", "", (), 5),  # default
        ("tokrate_rounds = 2", "", (), 2),  # ini over default
        ("tokrate_rounds = 2", "@pytest.mark.tokrate(rounds=3)", (), 3),  # marker over ini
        ("tokrate_rounds = 2", "@pytest.mark.tokrate(rounds=3)", ("--tokrate-rounds=4",), 4),
        ("", "@pytest.mark.tokrate(rounds=3)", ("--tokrate-rounds=4",), 4),  # CLI over marker
    ],
)
def test_precedence_of_rounds(
    pytester: pytest.Pytester, ini: str, marker: str, cli: tuple[str, ...], expected: int
) -> None:
    assert settings_of(pytester, *cli, ini=ini, marker=marker)["settings"]["rounds"] == expected


def test_generation_options_merge_key_by_key_across_layers(pytester: pytest.Pytester) -> None:
    data = settings_of(
        pytester,
        "--tokrate-option=temperature=0.25",
        ini="tokrate_options =\n    num_thread = 1\n    num_predict = 8\n    seed = 7\n",
        marker="@pytest.mark.tokrate(num_predict=16, options={'seed': 9}, warmup=2)",
    )
    assert data["settings"]["options"] == {
        "num_predict": 16,  # marker over ini
        "num_ctx": 2048,  # default
        "temperature": 0.25,  # command line over default
        "seed": 9,  # marker options={} over ini
        "num_thread": 1,  # ini
    }
    assert data["settings"]["warmup"] == 2


RUN_ARGS_TEST = """
import json
import pytest

@pytest.mark.tokrate(rounds=3, warmup=2, num_predict=8)
def test_run(tokrate):
    r = tokrate.run("Say hi.", rounds=2, warmup=0, num_predict=3, num_thread=1)
    with open("result.json", "w") as fh:
        json.dump(r.to_dict(), fh)
"""


def test_run_arguments_sit_between_marker_and_command_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RUN_ARGS_TEST)
    result = pytester.runpytest("--tokrate-model=smollm2", "--tokrate-num-predict=2")
    result.assert_outcomes(passed=1)
    data = json.loads((pytester.path / "result.json").read_text())
    settings = data["settings"]
    assert settings["rounds"] == 2  # run() over marker
    assert settings["warmup"] == 0  # run() over marker
    assert settings["options"]["num_predict"] == 2  # command line over run()
    assert settings["options"]["num_thread"] == 1
    assert data["rounds"] == 2 and len(data["samples"]) == 2
    assert data["warmup_rounds"] == 0
    assert all(s["output_tokens"] <= 2 for s in data["samples"])
    assert data["request"]["options"]["num_predict"] == 2  # what was actually sent


def test_stacked_markers_are_an_error_naming_both(pytester: pytest.Pytester) -> None:
    marker = "@pytest.mark.tokrate(rounds=3)\n@pytest.mark.tokrate(warmup=0, num_predict=8)"
    pytester.makepyfile(DUMP_SETTINGS.format(marker=marker))
    result = pytester.runpytest("--tokrate-model=smollm2")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert (
        "2 tokrate markers on one function: @pytest.mark.tokrate(warmup=0, num_predict=8) and "
        "@pytest.mark.tokrate(rounds=3); only one would apply: merge them into one "
        "@pytest.mark.tokrate(...)." in text
    ), text
    assert "Traceback" not in text


def test_module_and_function_markers_merge_the_closer_winning(pytester: pytest.Pytester) -> None:
    marker = (
        "pytestmark = pytest.mark.tokrate(rounds=3, warmup=2, options={'num_ctx': 512})\n"
        "@pytest.mark.tokrate(warmup=0, options={'num_predict': 8})"
    )
    s = settings_of(pytester, marker=marker)["settings"]
    assert (s["rounds"], s["warmup"]) == (3, 0)
    assert (s["options"]["num_ctx"], s["options"]["num_predict"]) == (512, 8)
