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


def test_every_rule_takes_its_conda_env_from_its_placement():
    """One decision per rule: env(X) and placement(X, ...) get the same X, so a GPU job gets the GPU env."""
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    for kind in ("gpu", "cpu"):
        assert f'"../../envs/{kind}.yaml"' in common
        assert (REPO / "envs" / f"{kind}.yaml").is_file()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.split(r"^(?=rule \w+:)", text, flags=re.M)[1:]
        for rule in rules:
            name = rule.split(":")[0]
            env = re.search(r"conda:\n\s+env\(([^)]*)\)", rule)
            place = re.search(r"\*\*placement\(([^,)]*)", rule)
            assert env and place and env.group(1) == place.group(1), (smk.name, name)
