"""The conda environments named by the rules pin exactly what pyproject.toml pins."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def pins(requirements) -> dict[str, str]:
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", req.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_envs_pin_the_pyproject_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    wanted = pins(deps)
    assert len(wanted) == len(deps), "every pyproject dependency is pinned with =="
    judge = pins(project["optional-dependencies"]["judge-local"])
    for kind, extra in (("gpu", judge), ("cpu", {})):  # the local judge runs in GPU jobs
        env = yaml.safe_load((REPO / "envs" / f"{kind}.yaml").read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert pins(pip) == wanted | extra, kind
        assert "python=3.11" in env["dependencies"]
        assert any(line.startswith("-e ..") for line in pip), "the env installs this package"


def test_every_rule_names_a_conda_env_that_exists():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        n_rules = len(re.findall(r"^rule \w+:", text, re.M))
        envs = re.findall(r'conda:\n\s+"([^"]+)"', text)
        assert len(envs) == n_rules, smk
        for env in envs:
            assert (smk.parent / env).resolve().is_file(), env
