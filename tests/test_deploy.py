"""The deployment files in deploy/ hold together: no container engine runs here, so they are
read instead. Every YAML file parses; every settings file they mount loads with the server's
own loader (and the collections and partners files beside it with theirs); every command they
run parses with the server's own argument parser; the ports they name agree; probes point at
/healthz and /readyz; nothing secret is committed."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from exchange.cli import build_parser
from exchange.collections import load_collections
from exchange.config import REPO_DIR, Settings, load_settings
from exchange.errors import ConfigError
from exchange.policy import partners

DEPLOY = REPO_DIR / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
YAML_FILES = sorted(DEPLOY.rglob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def kubernetes(kind: str) -> list[dict[str, Any]]:
    return [d for path in sorted(KUBERNETES.glob("*.yaml")) for d in documents(path)
            if d["kind"] == kind]


def compose() -> dict[str, Any]:
    [document] = documents(DEPLOY / "compose.yaml")
    return document


def servers() -> dict[str, dict[str, Any]]:
    """The compose services that run taxii-exchange."""
    return {name: s for name, s in compose()["services"].items()
            if s.get("image", "").startswith("taxii-exchange")}


def serve_arguments(command: list[str]) -> argparse.Namespace:
    """A `taxii-exchange ...` command line as the server's own parser reads it."""
    assert Path(command[0]).name == "taxii-exchange", command
    try:
        return build_parser().parse_args(command[1:])
    except SystemExit:
        raise AssertionError(f"taxii-exchange refuses {command[1:]}") from None


def dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments (continuation lines joined), in order."""
    found: dict[str, list[str]] = {}
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            found.setdefault(instruction.upper(), []).append(rest.strip())
    return found


def unit() -> dict[str, list[str]]:
    """The systemd unit's Key=Value lines (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / "taxii-exchange.service").read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def nginx(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    size = re.search(r"client_max_body_size\s+(\d+)([km]?);", text)
    assert size, path
    factor = {"": 1, "k": 1024, "m": 1024 * 1024}[size.group(2)]
    return {"upstreams": re.findall(r"^\s*server\s+([\w.-]+):(\d+)", text, re.MULTILINE),
            "proxy_pass": re.findall(r"proxy_pass\s+http://([\w.:-]+);", text),
            "body": int(size.group(1)) * factor, "text": text}


def interpolated(value: str) -> str:
    """A compose value as compose hands it over, each ${VAR...} shown as <VAR>."""
    return re.sub(r"\$\{(\w+)[^}]*\}", r"<\1>", value)


def mirror(root: Path, mounts: dict[str, Path | dict[str, str]]) -> None:
    """Lay files out under `root` as a container sees them: container path -> a host file or
    folder, or (a ConfigMap's or Secret's items) file name -> content."""
    for target, source in mounts.items():
        where = root / target.lstrip("/")
        if isinstance(source, dict):
            where.mkdir(parents=True, exist_ok=True)
            for name, content in source.items():
                (where / name).write_text(content, encoding="utf-8")
        elif source.is_dir():
            shutil.copytree(source, where)
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, where)


def load_mounted(root: Path, config: str) -> Settings:
    """The settings a container reads, with the collections and partners files they name."""
    settings = load_settings(root / config.lstrip("/"), environ={})
    assert load_collections(settings), "the collections mounted are found"
    assert settings.partners_file.is_relative_to(root), settings.partners_file
    return settings


# -- every file parses ----------------------------------------------------------------------

@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(DEPLOY)))
                                  for p in YAML_FILES])
def test_each_yaml_file_parses(path: Path):
    assert documents(path)


def test_the_kubernetes_manifests_are_the_expected_kinds():
    kinds = sorted(d["kind"] for p in KUBERNETES.glob("*.yaml") for d in documents(p))
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "Secret",
                     "Service"]
    assert all(d["apiVersion"] and d["metadata"]["name"] for p in KUBERNETES.glob("*.yaml")
               for d in documents(p))


# -- the settings they mount load -------------------------------------------------------------

def test_the_compose_servers_mount_settings_that_load(tmp_path: Path):
    for name, server in servers().items():
        mounts: dict[str, Path | dict[str, str]] = {}
        for volume in server["volumes"]:
            source, target, mode = volume.split(":")
            assert mode == "ro", (name, volume)  # config, collections, partners: read only
            mounts[target] = (DEPLOY / source).resolve()
        partners_dir = mounts.pop("/etc/taxii-exchange/partners")
        assert isinstance(partners_dir, Path)  # the operator's own: an empty one here
        mounts["/etc/taxii-exchange/partners"] = {"partners.yaml": "partners: []\n"}
        root = tmp_path / name
        mirror(root, mounts)
        settings = load_mounted(root, server["environment"]["EXCHANGE_CONFIG"])
        assert settings.partners_file.resolve() == \
            root / "etc/taxii-exchange/partners/partners.yaml"
        assert partners.load(settings.partners_file) == {}


def test_the_kubernetes_pods_mount_settings_that_load(tmp_path: Path):
    [deployment] = kubernetes("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    maps = {d["metadata"]["name"]: d["data"] for d in kubernetes("ConfigMap")}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in kubernetes("Secret")}
    mounts: dict[str, Path | dict[str, str]] = {}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            continue
        assert mount["readOnly"] is True, mount
        if "configMap" in volume:
            source, data = volume["configMap"], maps[volume["configMap"]["name"]]
        else:
            source, data = volume["secret"], secrets[volume["secret"]["secretName"]]
        items = {i["key"]: i["path"] for i in source.get("items", [])} or {k: k for k in data}
        mounts[mount["mountPath"]] = {path: data[key] for key, path in items.items()}
    mirror(tmp_path, mounts)
    env = {e["name"]: e for e in container["env"]}
    settings = load_mounted(tmp_path, env["EXCHANGE_CONFIG"]["value"])
    assert partners.load(settings.partners_file) == {}
    # Every collection in the ConfigMap is loaded (a file the loader skipped would be lost).
    assert len(load_collections(settings)) == len(maps["taxii-exchange-collections"])


def test_the_systemd_unit_reads_the_example_settings():
    [environment] = unit()["Environment"]
    assert environment == "EXCHANGE_CONFIG=/etc/taxii-exchange/config.yaml"
    settings = load_settings(DEPLOY / "config.example.yaml", environ={})
    assert str(settings.store_path).startswith(unit()["ReadWritePaths"][0])


def test_the_image_looks_for_settings_where_compose_and_kubernetes_mount_them():
    [environment] = dockerfile()["ENV"]
    config = re.search(r"EXCHANGE_CONFIG=(\S+)", environment)
    assert config
    [deployment] = kubernetes("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert config.group(1) == env["EXCHANGE_CONFIG"]
    assert {s["environment"]["EXCHANGE_CONFIG"] for s in servers().values()} == {config.group(1)}


# -- the commands they run parse ---------------------------------------------------------------

def commands() -> list[Any]:
    [deployment] = kubernetes("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    found = [pytest.param(shlex.split(unit()["ExecStart"][0]), id="systemd ExecStart"),
             pytest.param(yaml.safe_load(dockerfile()["CMD"][0]), id="Dockerfile CMD"),
             pytest.param(container["args"], id="kubernetes args")]
    found += [pytest.param(s["command"], id=f"compose {name}") for name, s in servers().items()]
    return found


@pytest.mark.parametrize("command", commands())
def test_each_command_is_a_serve_the_server_takes(command: list[str]):
    arguments = serve_arguments(command)
    assert arguments.command == "serve"


# -- ports agree -------------------------------------------------------------------------------

def test_the_image_serves_on_the_port_it_exposes():
    command = serve_arguments(yaml.safe_load(dockerfile()["CMD"][0]))
    assert dockerfile()["EXPOSE"] == [str(command.port)]


def test_kubernetes_ports_agree():
    [deployment] = kubernetes("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [port] = container["ports"]
    assert serve_arguments(container["args"]).port == port["containerPort"]
    config = yaml.safe_load(kubernetes("ConfigMap")[0]["data"]["config.yaml"])
    assert config["port"] == port["containerPort"]
    [service] = kubernetes("Service")
    [target] = service["spec"]["ports"]
    assert target["targetPort"] in (port["name"], port["containerPort"])
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [budget] = kubernetes("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_compose_ports_agree():
    config = yaml.safe_load((DEPLOY / "compose" / "config.yaml").read_text())
    proxy = nginx(DEPLOY / "compose" / "nginx.conf")
    ports = set()
    for name, server in servers().items():
        port = serve_arguments(server["command"]).port
        assert server["expose"] == [str(port)] and port == config["port"], name
        ports.add((name, str(port)))
    assert set(proxy["upstreams"]) == ports and len(ports) == 2
    assert proxy["proxy_pass"] == ["taxii_exchange"]


def test_the_systemd_nginx_proxies_to_the_example_settings_port():
    settings = load_settings(DEPLOY / "config.example.yaml", environ={})
    arguments = serve_arguments(shlex.split(unit()["ExecStart"][0]))
    port = arguments.port or settings.port
    assert nginx(DEPLOY / "nginx.conf")["upstreams"] == [(settings.host, str(port))]


# -- what nginx sends, the server believes and takes ----------------------------------------

@pytest.mark.parametrize(("proxy", "settings", "nginx_address"), [
    pytest.param("nginx.conf", "config.example.yaml", "127.0.0.1", id="systemd"),
    pytest.param("compose/nginx.conf", "compose/config.yaml", None, id="compose"),
])
def test_nginx_is_a_trusted_proxy_and_passes_every_body_the_server_takes(
        tmp_path: Path, proxy: str, settings: str, nginx_address: str | None):
    config = yaml.safe_load((DEPLOY / settings).read_text())
    config.pop("collections_dir", None)  # the roots matter here, not the collections
    config.pop("partners_file", None)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    loaded = load_settings(tmp_path / "config.yaml", environ={})
    conf = nginx(DEPLOY / proxy)
    if nginx_address is None:  # compose: the address it is given on the network
        nginx_address = compose()["services"]["nginx"]["networks"]["exchange"]["ipv4_address"]
    assert any(network.overlaps(network.__class__(nginx_address))
               for network in loaded.trusted_proxies)
    assert conf["body"] > max(r.max_content_length for r in loaded.api_roots)
    for header in ("Host $host", "X-Forwarded-Proto $scheme",
                   "X-Forwarded-For $proxy_add_x_forwarded_for"):
        assert f"proxy_set_header {header};" in conf["text"]
    assert re.search(r"listen 443 ssl;", conf["text"]) and "ssl_certificate " in conf["text"]


# -- probes -------------------------------------------------------------------------------------

def test_kubernetes_probes_readiness_on_readyz_and_liveness_on_healthz():
    [deployment] = kubernetes("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [port] = container["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_compose_and_the_image_check_health_on_healthz_and_readyz():
    for name, server in servers().items():
        assert "http://127.0.0.1:8000/healthz" in " ".join(server["healthcheck"]["test"]), name
    assert "/healthz" in dockerfile()["HEALTHCHECK"][0]
    nginx_check = " ".join(compose()["services"]["nginx"]["healthcheck"]["test"])
    assert "https://127.0.0.1/readyz" in nginx_check
    assert {name: {"condition": "service_healthy"} for name in servers()} == \
        compose()["services"]["nginx"]["depends_on"]


# -- not root ------------------------------------------------------------------------------------

def test_nothing_runs_as_root():
    assert dockerfile()["USER"] == ["10001"]
    [deployment] = kubernetes("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"]
    [container] = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    settings = unit()
    assert settings["User"] == ["taxii-exchange"]
    for option in ("NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=true",
                   "PrivateTmp=true", "CapabilityBoundingSet="):
        key, _, value = option.partition("=")
        assert settings[key] == [value], option


# -- the replica set --------------------------------------------------------------------------

def test_compose_servers_use_the_replica_set_compose_makes():
    services = compose()["services"]
    members = sorted(n for n, s in services.items() if "--replSet" in s.get("command", []))
    assert len(members) == 3
    for name in members:
        command = services[name]["command"]
        assert command[command.index("--replSet") + 1] == "rs0"
    script = services["mongo-init"]["entrypoint"][-1]
    assert "_id: 'rs0'" in script and all(f"host: '{m}:27017'" in script for m in members)
    for name, server in servers().items():
        url = urlsplit(interpolated(server["environment"]["EXCHANGE_STORE"]))
        assert url.scheme == "mongodb", name
        assert sorted(url.netloc.rpartition("@")[2].split(",")) == \
            [f"{m}:27017" for m in members]
        assert parse_qs(url.query)["replicaSet"] == ["rs0"]
        # This branch's settings take sqlite:/// URLs only: the URL is checked here, and the
        # settings file the servers mount holds no store.
        assert "store" not in yaml.safe_load((DEPLOY / "compose" / "config.yaml").read_text())


# -- no secret committed --------------------------------------------------------------------------

def test_compose_takes_its_secrets_from_the_environment_and_files():
    services = compose()["services"]
    passwords = {(name, key): value for name, service in services.items()
                 for key, value in service.get("environment", {}).items() if "PASSWORD" in key}
    assert passwords and all(interpolated(v) == "<MONGO_PASSWORD>" for v in passwords.values())
    entrypoint = services["mongo-init"]["entrypoint"]  # from its environment, at run time
    assert entrypoint[entrypoint.index("--password") + 1] == "$$MONGO_PASSWORD"
    for name, server in servers().items():
        password = urlsplit(interpolated(server["environment"]["EXCHANGE_STORE"])).password
        assert password == "<MONGO_PASSWORD>", name
    assert all("file" in s for s in compose()["secrets"].values())


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(DEPLOY)))
                                  for p in sorted(DEPLOY.rglob("*")) if p.is_file()])
def test_no_key_or_token_is_committed(path: Path):
    text = path.read_text(encoding="utf-8")
    assert "PRIVATE KEY" not in text
    assert not re.search(r"txe_[A-Za-z0-9_-]{20,}", text)  # an API token
    assert not re.search(r"\$argon2", text)


def test_the_kubernetes_secret_is_placeholders_the_server_refuses_to_start_on(tmp_path: Path):
    [secret] = kubernetes("Secret")
    data = secret["stringData"]
    assert data["EXCHANGE_METRICS_TOKEN"] == ""
    (tmp_path / "partners.yaml").write_text(data["partners.yaml"])
    assert partners.load(tmp_path / "partners.yaml") == {}
    with pytest.raises(ConfigError, match="store"):
        load_settings(None, environ={"EXCHANGE_STORE": data["EXCHANGE_STORE"]})
    assert "REPLACE" in data["EXCHANGE_STORE"]


def test_the_deploy_readme_says_nothing_here_ran_these_files():
    text = (DEPLOY / "README.md").read_text()
    assert "No container engine runs" in text
    assert "taxii-exchange store backup" in text and "mongodump" in text
    assert "shard key" in text
