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
    """One decision per rule: env("rule") and placement("rule") both ask Study.placement of that rule."""
    from syncr2.core.settings import Placement

    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert 'f"../../envs/{STUDY.placement(rule).conda_env}"' in common
    for gpu, kind in ((True, "gpu"), (False, "cpu")):
        assert Placement(gpu).conda_env == f"{kind}.yaml"
        assert (REPO / "envs" / f"{kind}.yaml").is_file()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rule in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M)[1:]:
            name = rule.split(":")[0].split()[1]
            assert f'conda:\n        env("{name}")' in rule, (smk.name, name)
            assert f'**placement("{name}")' in rule, (smk.name, name)


def test_placement_puts_gpu_work_on_a_gpu_with_the_gpu_env():
    """The paper's MLP maps (device cuda) and a local judge are GPU jobs; an HTTP judge and CPU MLPs are not."""
    from syncr2.core.settings import Study

    def study(name: str) -> Study:
        return Study.from_config(yaml.safe_load((REPO / "config" / name).read_text()))

    paper, default, smoke = study("paper.yaml"), study("config.yaml"), study("smoke.yaml")
    assert paper.placement("mlp_table").gpu and not paper.placement("judge").gpu
    assert default.placement("judge").gpu and not default.placement("mlp_table").gpu
    assert smoke.placement("simulate").gpu and smoke.placement("read_passive").gpu
    assert not any(smoke.placement(r).gpu for r in ("r2_table", "figures", "surrogate_draws", "tasks"))
    assert smoke.placement("r2_table", {"pair": "a__b"}).run_options == {"device": smoke.config["r2"]["device"]}
