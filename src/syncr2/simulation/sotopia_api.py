"""The sotopia package's pieces we use, imported offline, and our Task record.

sotopia 0.1.5's default Redis backend needs a Redis server even to construct
a profile, so this module sets ``SOTOPIA_STORAGE_BACKEND=local`` before
sotopia is imported. Both the task loaders (``tasks``) and the prompt
renderers (``prompts``) build on it, so neither has to import the other.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import types
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

# Before anything imports sotopia.database: its import pings Redis under the
# default backend, and its Redis models cannot even be constructed offline.
os.environ.setdefault("SOTOPIA_STORAGE_BACKEND", "local")

if TYPE_CHECKING:
    from sotopia.database import AgentProfile, EnvironmentProfile

log = logging.getLogger(__name__)


class TaskDataError(ValueError):
    """Sotopia task data is malformed; the message names the file, the record id and the field."""


@cache
def sotopia_modules() -> types.SimpleNamespace:
    """Import the sotopia pieces we use, offline (local JSON backend, nothing talks to Redis).

    Imported on first use: importing sotopia takes seconds. sotopia prints a
    banner to stdout on import; it is sent to the debug log instead.
    """
    if "sotopia.database" not in sys.modules and os.environ["SOTOPIA_STORAGE_BACKEND"].lower() != "local":
        raise RuntimeError(
            f"SOTOPIA_STORAGE_BACKEND={os.environ['SOTOPIA_STORAGE_BACKEND']!r}: syncr2 reads Sotopia "
            "profiles offline and needs the local backend; unset it or set it to 'local'"
        )
    banner = io.StringIO()
    with contextlib.redirect_stdout(banner):
        from sotopia.database import (
            AgentProfile,
            EnvAgentComboStorage,
            EnvironmentProfile,
            RelationshipType,
        )
        from sotopia.database.storage_backend import is_local_backend
        from sotopia.envs.parallel import (
            get_bio,
            render_text_for_agent,
            render_text_for_environment,
        )
        from sotopia.messages import ScriptBackground
    if banner.getvalue().strip():
        log.debug("sotopia: %s", banner.getvalue().strip())
    if not is_local_backend():
        raise RuntimeError(
            "sotopia.database was imported with the Redis backend before syncr2.simulation.tasks; its profiles cannot be "
            "built without a Redis server. Import syncr2.simulation.tasks first or set SOTOPIA_STORAGE_BACKEND=local"
        )
    return types.SimpleNamespace(
        AgentProfile=AgentProfile, EnvironmentProfile=EnvironmentProfile,
        EnvAgentComboStorage=EnvAgentComboStorage, RelationshipType=RelationshipType,
        get_bio=get_bio, render_text_for_agent=render_text_for_agent,
        render_text_for_environment=render_text_for_environment, ScriptBackground=ScriptBackground,
    )


@dataclass(frozen=True, eq=False)
class Task:
    """One Sotopia task: the plain facts the workflow needs plus the sotopia objects for rendering.

    ``agent_goals`` are raw (with Sotopia's ``<extra_info>``-style tags);
    ``personas`` are the full names of every persona of the task source (the
    passive reader is drawn from them), sorted; ``personas_in_file_order`` the
    same names in the order of the source's agent file.
    """

    task_id: int
    combo_pk: str
    env_pk: str
    codename: str
    source: str
    scenario: str
    relationship: int
    relationship_name: str
    agent_pks: tuple[str, str]
    agent_names: tuple[str, str]
    agent_goals: tuple[str, str]
    env: EnvironmentProfile
    agents: tuple[AgentProfile, AgentProfile]
    personas: tuple[str, ...] = ()
    personas_in_file_order: tuple[str, ...] = ()


def full_name(profile: AgentProfile) -> str:
    """A persona's name as the prompts use it: "First Last"."""
    return f"{profile.first_name} {profile.last_name}"
