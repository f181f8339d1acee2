"""`.env.example` lists every setting server/settings.py reads, each at a value it accepts."""

import re
from pathlib import Path

from server.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
# Read by libraries or by one tool, not by the Settings class (the example says which).
ELSEWHERE = {"PROMETHEUS_MULTIPROC_DIR", "OTEL_PROPAGATORS", "XIAOQU_ADMIN_USERNAME",
             "XIAOQU_ADMIN_NAME"}
RETIRED = {"TRUST_PROXY_HEADERS"}  # refused by name at start-up (its replacement is named)


def env_names() -> dict[str, str]:
    """{environment variable: Settings field} for every setting."""
    names = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names[alias if isinstance(alias, str) else name.upper()] = name
    return {env: name for env, name in names.items() if env not in RETIRED}


def example() -> dict[str, str]:
    return {m[1]: m[2] for line in EXAMPLE.read_text().splitlines() if (m := LINE.match(line))}


def test_the_example_lists_every_setting_and_nothing_else():
    listed, settings = set(example()), set(env_names())
    assert not settings - listed, f"missing from .env.example: {sorted(settings - listed)}"
    assert not listed - settings - ELSEWHERE, f"not a setting: {sorted(listed - settings - ELSEWHERE)}"


def test_the_example_values_are_accepted(tmp_path):
    fields = env_names()
    values = {fields[k]: v for k, v in example().items() if k in fields and v}
    values["data_dir"] = tmp_path  # (its example value is the default, relative "var")
    loaded = load_settings(**values)
    assert loaded.http_port == 8000 and loaded.mode == "demo"
