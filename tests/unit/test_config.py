import pytest

from apsis.config import Config, is_loopback_bind, load_config, parse_bind, parse_size
from apsis.errors import JobError


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert str(cfg.jobs) == "jobs" and str(cfg.database) == "apsis.db" and cfg.bind == "127.0.0.1:5000"


def test_paths_are_relative_to_the_file(tmp_path):
    path = tmp_path / "apsis.yaml"
    path.write_text("jobs: myjobs\ndatabase: /var/x.db\noutput: {max_bytes: 2MiB}\n"
                    "schedule: {horizon: 2h}\nwaiting: {max_time: 1h}\n"
                    "action: {type: webhook, url: 'https://example.invalid/hook'}\n")
    cfg = load_config(path)
    assert cfg.jobs == tmp_path / "myjobs" and str(cfg.database) == "/var/x.db"
    assert cfg.output_max_bytes == 2 * 1024 * 1024 and cfg.horizon == 7200 and cfg.waiting_max_time == 3600
    assert cfg.actions[0]["type"] == "webhook"


def test_bad_keys_are_located(tmp_path):
    path = tmp_path / "apsis.yaml"
    path.write_text("jobs: j\nouptut: {max_bytes: 1}\nschedule: {horizon: never}\n")
    with pytest.raises(JobError) as exc:
        load_config(path)
    text = str(exc.value)
    assert "apsis.yaml:2:1: unknown key 'ouptut'" in text and "did you mean 'output'" in text
    assert "apsis.yaml:3:" in text and "horizon" in text


def test_bind_rules():
    assert parse_bind("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_bind("unix:/run/a.sock") == "/run/a.sock"
    assert is_loopback_bind("[::1]:80") and is_loopback_bind("unix:/x") and not is_loopback_bind("0.0.0.0:1")
    cfg = Config(bind="0.0.0.0:5000")
    with pytest.raises(ValueError, match="non-loopback"):
        cfg.check_bind()
    cfg.insecure = True
    cfg.check_bind()
    assert parse_size("64MiB") == 64 * 1024 * 1024 and parse_size(10) == 10


def test_remote_settings_come_from_the_config(tmp_path, monkeypatch):
    from apsis.engine.hosts import RemoteSettings

    monkeypatch.setenv("APSIS_SSH", "ssh -F from-env")
    path = tmp_path / "apsis.yaml"
    path.write_text("remote: {ssh: 'ssh -F /etc/apsis/ssh_config -o Port=2222', agent_dir: /srv/agent}\n")
    settings = RemoteSettings.from_config(load_config(path))
    assert settings.ssh == ("ssh", "-F", "/etc/apsis/ssh_config", "-o", "Port=2222")
    assert settings.state_dir == "/srv/agent"
    assert RemoteSettings.from_config(load_config(None)).ssh == ("ssh", "-F", "from-env")
