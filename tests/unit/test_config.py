"""Settings from DOCKYARD_* variables, and dockyard.toml / langgraph.json parsing."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import GraphSpec, ProjectConfig, Settings, load_project, parse_dotenv
from dockyard.errors import ConfigError

# ----------------------------------------------------------------- Settings


def test_settings_defaults() -> None:
    s = Settings.from_env(environ={})
    assert s == Settings()
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 2024, 16)
    assert s.database_url is None
    assert s.data_dir is None
    assert s.max_body_bytes == 10 * 1024 * 1024
    assert s.allow_private_webhooks is False
    assert s.webhook_allowed_domains == ()
    assert s.heartbeat_seconds == 10.0
    assert s.log_level == "info"
    assert s.config is None


def test_settings_from_every_variable() -> None:
    env = {
        "DOCKYARD_DATABASE_URL": "postgresql://u:secret@db:5432/dockyard",
        "DOCKYARD_HOST": "0.0.0.0",
        "DOCKYARD_PORT": "8123",
        "DOCKYARD_WORKERS": "4",
        "DOCKYARD_DATA_DIR": "/var/lib/dockyard",
        "DOCKYARD_MAX_BODY_BYTES": "1024",
        "DOCKYARD_ALLOW_PRIVATE_WEBHOOKS": "Yes",
        "DOCKYARD_WEBHOOK_ALLOWED_DOMAINS": "Example.com, hooks.internal ,,",
        "DOCKYARD_HEARTBEAT_SECONDS": "2.5",
        "DOCKYARD_LOG_LEVEL": "DEBUG",
        "DOCKYARD_CONFIG": "conf/dockyard.toml",
    }
    s = Settings.from_env(environ=env)
    assert s.database_url == "postgresql://u:secret@db:5432/dockyard"
    assert s.host == "0.0.0.0"
    assert s.port == 8123
    assert s.workers == 4
    assert s.data_dir == Path("/var/lib/dockyard")
    assert s.max_body_bytes == 1024
    assert s.allow_private_webhooks is True
    assert s.webhook_allowed_domains == ("example.com", "hooks.internal")
    assert s.heartbeat_seconds == 2.5
    assert s.log_level == "debug"
    assert s.config == Path("conf/dockyard.toml")


def test_settings_read_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_PORT", "9000")
    monkeypatch.setenv("DOCKYARD_HOST", "")  # empty counts as unset
    s = Settings.from_env()
    assert s.port == 9000
    assert s.host == "127.0.0.1"


def test_overrides_win_and_none_is_ignored() -> None:
    s = Settings.from_env(
        {"port": 7000, "workers": "3", "host": None, "allow_private_webhooks": True},
        environ={"DOCKYARD_PORT": "8000", "DOCKYARD_HOST": "::"},
    )
    assert s.port == 7000
    assert s.workers == 3
    assert s.host == "::"
    assert s.allow_private_webhooks is True


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        Settings.from_env({"nope": 1}, environ={})


@pytest.mark.parametrize(
    ("var", "raw", "expected"),
    [
        ("DOCKYARD_PORT", "abc", "expected an integer"),
        ("DOCKYARD_PORT", "-1", "must be at least 0"),
        ("DOCKYARD_WORKERS", "0", "must be at least 1"),
        ("DOCKYARD_WORKERS", "2.5", "expected an integer"),
        ("DOCKYARD_MAX_BODY_BYTES", "10MB", "expected an integer"),
        ("DOCKYARD_HEARTBEAT_SECONDS", "soon", "expected a number"),
        ("DOCKYARD_HEARTBEAT_SECONDS", "0", "must be a positive number"),
        ("DOCKYARD_HEARTBEAT_SECONDS", "nan", "must be a positive number"),
        ("DOCKYARD_ALLOW_PRIVATE_WEBHOOKS", "maybe", "expected true/false"),
        ("DOCKYARD_LOG_LEVEL", "loud", "expected one of"),
    ],
)
def test_bad_values_name_the_variable(var: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environ={var: raw})
    assert var in str(info.value)
    assert expected in str(info.value)
    assert info.value.details["key"] == var


def test_bad_override_string_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DOCKYARD_PORT: expected an integer"):
        Settings.from_env({"port": "eighty"}, environ={})


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on"])
def test_true_booleans(raw: str) -> None:
    s = Settings.from_env(environ={"DOCKYARD_ALLOW_PRIVATE_WEBHOOKS": raw})
    assert s.allow_private_webhooks is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_false_booleans(raw: str) -> None:
    s = Settings.from_env(environ={"DOCKYARD_ALLOW_PRIVATE_WEBHOOKS": raw})
    assert s.allow_private_webhooks is False


def test_paths_default_under_the_project(tmp_path: Path) -> None:
    s = Settings()
    assert s.data_path(tmp_path) == tmp_path / ".dockyard"
    assert s.sqlite_path(tmp_path) == tmp_path / ".dockyard" / "dockyard.db"
    url = s.database_url_for(tmp_path)
    assert url == f"sqlite:///{(tmp_path / '.dockyard' / 'dockyard.db').resolve()}"
    assert url.startswith("sqlite:////")


def test_paths_follow_data_dir_and_database_url(tmp_path: Path) -> None:
    relative = Settings(data_dir=Path("state"))
    assert relative.sqlite_path(tmp_path) == tmp_path / "state" / "dockyard.db"
    absolute = Settings(data_dir=tmp_path / "abs")
    assert absolute.data_path(Path("/elsewhere")) == tmp_path / "abs"
    pg = Settings(database_url="postgresql://localhost/x")
    assert pg.database_url_for(tmp_path) == "postgresql://localhost/x"


def test_database_password_is_not_shown() -> None:
    s = Settings(database_url="postgresql://user:hunter2@db:5432/app")
    assert "hunter2" not in repr(s)
    assert s.masked_database_url == "postgresql://user:***@db:5432/app"
    assert Settings(database_url="sqlite:///x.db").masked_database_url == "sqlite:///x.db"
    assert Settings().masked_database_url is None


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


# ----------------------------------------------------------------- project files


def write_json(root: Path, data: Any, name: str = "langgraph.json") -> Path:
    path = root / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def write_toml(root: Path, text: str, name: str = "dockyard.toml") -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_langgraph_json_unchanged(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    write_json(
        tmp_path,
        {
            "$schema": "https://langgra.ph/schema.json",
            "dependencies": [".", "./src", "langchain_openai"],
            "graphs": {
                "agent": "./src/agent.py:graph",
                "other": {"path": "my_pkg.graphs:other", "description": "The other one"},
            },
            "env": {"OPENAI_API_KEY": "sk-test", "RETRIES": 3},
            "store": {
                "index": {"embed": "openai:text-embedding-3-small", "dims": 1536},
                "ttl": {"refresh_on_read": True, "default_ttl": 60},
            },
            "auth": {"path": "./auth.py:auth"},
            "http": {"cors": {"allow_origins": ["*"]}},
            "checkpointer": {"ttl": {"strategy": "delete", "default_ttl": 43200}, "serde": {}},
            "python_version": "3.11",
            "dockerfile_lines": ["RUN true"],
            "something_new": {"a": 1},
        },
    )
    project = load_project(tmp_path)
    assert project.root == tmp_path.resolve()
    assert project.source == (tmp_path / "langgraph.json").resolve()
    assert project.graphs == {
        "agent": GraphSpec("agent", "./src/agent.py:graph", None),
        "other": GraphSpec("other", "my_pkg.graphs:other", "The other one"),
    }
    assert project.graphs["agent"].is_file
    assert project.graphs["agent"].location == "./src/agent.py"
    assert project.graphs["agent"].attr == "graph"
    assert not project.graphs["other"].is_file
    assert project.dependencies == [".", "./src", "langchain_openai"]
    assert project.dependency_paths == [tmp_path.resolve(), (tmp_path / "src").resolve()]
    assert project.env == {"OPENAI_API_KEY": "sk-test", "RETRIES": "3"}
    assert project.store["index"]["dims"] == 1536
    assert project.store["ttl"] == {"refresh_on_read": True, "default_ttl": 60}
    assert project.auth == {"path": "./auth.py:auth"}
    assert project.http == {"cors": {"allow_origins": ["*"]}}
    assert project.checkpointer_ttl == {"strategy": "delete", "default_ttl": 43200}
    assert project.extra == {
        "$schema": "https://langgra.ph/schema.json",
        "python_version": "3.11",
        "dockerfile_lines": ["RUN true"],
        "something_new": {"a": 1},
        "checkpointer": {"serde": {}},
    }


def test_minimal_project_defaults(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"graphs": {"a": "agent:graph"}})
    project = load_project(path)
    assert project == ProjectConfig(
        root=tmp_path.resolve(),
        source=path.resolve(),
        graphs={"a": GraphSpec("a", "agent:graph")},
    )
    assert project.auth is None
    assert project.checkpointer_ttl is None


def test_load_dockyard_toml_with_same_keys(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        """
        dependencies = ["."]
        env = ".env"

        [graphs]
        agent = "./agent.py:graph"

        [graphs.helper]
        path = "./helper.py:make_graph"
        description = "Builds per run"

        [store.index]
        dims = 8

        [http]
        disable_meta = true

        [checkpointer.ttl]
        default_ttl = 5
        """,
    )
    (tmp_path / ".env").write_text("A=1\n")
    project = load_project(tmp_path)
    assert project.source.name == "dockyard.toml"
    assert project.graphs["agent"].target == "./agent.py:graph"
    assert project.graphs["helper"] == GraphSpec(
        "helper", "./helper.py:make_graph", "Builds per run"
    )
    assert project.env == {"A": "1"}
    assert project.store == {"index": {"dims": 8}}
    assert project.http == {"disable_meta": True}
    assert project.checkpointer_ttl == {"default_ttl": 5}


def test_dockyard_toml_is_preferred_over_langgraph_json(tmp_path: Path) -> None:
    write_json(tmp_path, {"graphs": {"json": "a:b"}})
    write_toml(tmp_path, '[graphs]\ntoml = "a:b"\n')
    assert list(load_project(tmp_path).graphs) == ["toml"]
    assert list(load_project(tmp_path / "langgraph.json").graphs) == ["json"]


def test_any_file_name_is_accepted(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"graphs": {"g": "a:b"}}, name="custom.json")
    assert load_project(str(path)).source.name == "custom.json"
    toml = write_toml(tmp_path, '[graphs]\ng = "a:b"\n', name="prod.toml")
    assert load_project(toml).graphs["g"].target == "a:b"


def test_env_file(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "app.env").write_text(
        textwrap.dedent(
            """\
            # a comment
            PLAIN=value
            export EXPORTED=yes
            SPACED = spaced value   # trailing comment
            DQ="double # not a comment"
            SQ='single \\n literal'
            ESC="line1\\nline2 \\"quoted\\""
            EMPTY=
            URL=https://example.com/#anchor

            """
        )
    )
    write_json(tmp_path, {"graphs": {"g": "a:b"}, "env": "config/app.env"})
    assert load_project(tmp_path).env == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "spaced value",
        "DQ": "double # not a comment",
        "SQ": "single \\n literal",
        "ESC": 'line1\nline2 "quoted"',
        "EMPTY": "",
        "URL": "https://example.com/#anchor",
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [("GOOD=1\nnot a pair\n", "line 2: expected KEY=VALUE"), ('A="open\n', "line 1: unterminated")],
)
def test_bad_env_file_names_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / ".env"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        parse_dotenv(path)
    assert ".env" in str(info.value)
    assert expected in str(info.value)


def test_apply_env_does_not_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_TEST_KEEP", "outer")
    monkeypatch.delenv("DOCKYARD_TEST_NEW", raising=False)
    write_json(
        tmp_path,
        {"graphs": {"g": "a:b"}, "env": {"DOCKYARD_TEST_KEEP": "file", "DOCKYARD_TEST_NEW": "x"}},
    )
    load_project(tmp_path).apply_env()
    assert os.environ["DOCKYARD_TEST_KEEP"] == "outer"
    assert os.environ["DOCKYARD_TEST_NEW"] == "x"
    monkeypatch.delenv("DOCKYARD_TEST_NEW")


# ----------------------------------------------------------------- project errors


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({}, "graphs", "missing"),
        ({"graphs": {}}, "graphs", "is empty"),
        ({"graphs": ["./a.py:g"]}, "graphs", "expected an object"),
        ({"graphs": {"agent": "./agent.py"}}, "graphs.agent", "invalid target"),
        ({"graphs": {"agent": "agent.py:"}}, "graphs.agent", "invalid target"),
        ({"graphs": {"agent": ":graph"}}, "graphs.agent", "invalid target"),
        ({"graphs": {"agent": "my-pkg.mod:graph"}}, "graphs.agent", "invalid target"),
        ({"graphs": {"agent": "./a.py:not-an-attr"}}, "graphs.agent", "invalid target"),
        ({"graphs": {"agent": 3}}, "graphs.agent", "expected a string"),
        ({"graphs": {"agent": {"description": "x"}}}, "graphs.agent", "'path'"),
        (
            {"graphs": {"agent": {"path": "a:b", "description": 1}}},
            "graphs.agent.description",
            "expected a string",
        ),
        ({"graphs": {"g": "a:b"}, "dependencies": "."}, "dependencies", "list of strings"),
        ({"graphs": {"g": "a:b"}, "dependencies": [1]}, "dependencies", "list of strings"),
        ({"graphs": {"g": "a:b"}, "dependencies": ["./nope"]}, "dependencies", "does not exist"),
        ({"graphs": {"g": "a:b"}, "env": ["A=1"]}, "env", "expected an object or a path"),
        ({"graphs": {"g": "a:b"}, "env": {"A": [1]}}, "env.A", "expected a string"),
        ({"graphs": {"g": "a:b"}, "env": ".env.missing"}, "env", "not found"),
        ({"graphs": {"g": "a:b"}, "store": []}, "store", "expected an object"),
        ({"graphs": {"g": "a:b"}, "store": {"index": 1}}, "store.index", "expected an object"),
        ({"graphs": {"g": "a:b"}, "store": {"ttl": "1h"}}, "store.ttl", "expected an object"),
        ({"graphs": {"g": "a:b"}, "auth": "./auth.py:a"}, "auth", "expected an object"),
        ({"graphs": {"g": "a:b"}, "http": True}, "http", "expected an object"),
        ({"graphs": {"g": "a:b"}, "checkpointer": 1}, "checkpointer", "expected an object"),
        (
            {"graphs": {"g": "a:b"}, "checkpointer": {"ttl": 60}},
            "checkpointer.ttl",
            "expected an object",
        ),
    ],
)
def test_invalid_project_names_file_and_key(
    tmp_path: Path, data: dict[str, Any], key: str, expected: str
) -> None:
    write_json(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    message = str(info.value)
    assert "langgraph.json" in message
    assert f"key '{key}'" in message
    assert expected in message
    assert info.value.details == {"file": str((tmp_path / "langgraph.json").resolve()), "key": key}


def test_invalid_toml_graph_target(tmp_path: Path) -> None:
    write_toml(tmp_path, '[graphs]\nagent = "agent"\n')
    with pytest.raises(ConfigError, match=r"dockyard\.toml: key 'graphs\.agent': invalid target"):
        load_project(tmp_path)


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    write_json(tmp_path, '{\n  "graphs": {\n    "a": "x:y",\n  }\n}\n')
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert "langgraph.json" in str(info.value)
    assert "invalid JSON at line 4" in str(info.value)


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    write_toml(tmp_path, '[graphs]\nagent = "a:b"\nbroken = \n')
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert "dockyard.toml" in str(info.value)
    assert "line 3" in str(info.value)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    write_json(tmp_path, "[1, 2]")
    with pytest.raises(ConfigError, match=r"langgraph\.json: expected an object at top level"):
        load_project(tmp_path)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no dockyard\.toml or langgraph\.json found"):
        load_project(tmp_path)
    with pytest.raises(ConfigError, match=r"missing\.json: config file not found"):
        load_project(tmp_path / "missing.json")
