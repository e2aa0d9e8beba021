"""The Kubernetes manifests, checked offline (no cluster, no Docker engine needed).

Every overlay is rendered with ``kubectl kustomize`` (kubectl carries kustomize); each rendered
resource is validated against the Kubernetes JSON schemas of a pinned Kubernetes version in
strict mode (``kubernetes-validate``: unknown fields fail), the KEDA objects against the KEDA
schema in ``k8s/schemas/``; the YAML is linted (yamllint) and the Dockerfile too (hadolint).
Then the tests read the rendered manifests for what a user would notice: a pool without a
worker or autoscaler, a container that runs as root or has no probes or limits, a grace period
shorter than the drain, a secret value inline, a network path that should not exist.  The
queue names the ScaledObjects watch are checked against a real Redis with real dramatiq
messages, counted the way KEDA's redis scaler counts them.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml

from cli.main import build_parser
from core.contracts import pool_queues
from core.settings import Settings, load_settings
from workers.pool import queues_for

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
#: the shipped overlays, and "all-components": prod with every optional component at once
OVERLAYS = ["dev", "prod", "external-redis", "hpa", "sentinel", "all-components"]
KEDA_OVERLAYS = ["dev", "prod", "external-redis", "sentinel"]
EXTERNAL_REDIS = {"external-redis", "all-components"}
COMPONENTS = ["bitrix24", "external-redis", "hpa", "prometheus", "sentry-egress"]
#: components that replace one another, rendered by an overlay of their own instead of in
#: "all-components": redis-sentinel (k8s/overlays/sentinel) is the other choice to external-redis
ALTERNATIVES = {"redis-sentinel": "sentinel"}
#: the oldest Kubernetes the manifests promise to work on, and the newest the schemas know
K8S_VERSIONS = ["1.30.0", "1.33.0"]
SECRETS_MOUNT = "/var/run/secrets/gonets/"
#: what `worker.stop()` and closing the broker and providers may take beyond the drain
DRAIN_MARGIN_S = 10
SMPP_PROVIDERS = {"smsc_smpp", "mts_smpp"}


def _tool(name: str) -> str:
    """A tool the suite needs: on PATH, or next to this Python (pip-installed)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; CI must check the manifests")
    pytest.skip(f"{name} is not installed here (CI has it)")


# --- rendering ---------------------------------------------------------------------------


def render(path: Path) -> list[dict[str, Any]]:
    res = subprocess.run([_tool("kubectl"), "kustomize", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"kubectl kustomize {path} failed:\n{res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = {o: render(K8S / "overlays" / o) for o in OVERLAYS if o != "all-components"}
    # what a platform engineer's own overlay would do: prod plus every component
    site = tmp_path_factory.mktemp("site")
    up = os.path.relpath(K8S, site)
    (site / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": "gonets", "resources": [f"{up}/overlays/prod"],
        "components": [f"{up}/components/{c}" for c in COMPONENTS]}), encoding="utf-8")
    out["all-components"] = render(site)
    return out


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for d in of_kind(docs, kind):
        if d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name}")


def configmap(docs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, "ConfigMap")
             if d["metadata"]["name"].startswith(prefix + "-")]
    assert len(found) == 1, f"expected one generated ConfigMap {prefix}-<hash>"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d


def gonets_container(d: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "gonets"]
    return c


def workers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """pool name -> worker Deployment (found by its command, not by its name)."""
    out = {}
    for d in of_kind(docs, "Deployment"):
        args = gonets_container(d).get("args", [])
        if args[:1] == ["worker"]:
            out[build_parser().parse_args(args).pool] = d
    return out


def shipped_settings(docs: list[dict[str, Any]], tmp_path: Path) -> Settings:
    """The settings a pod of this overlay loads: its ConfigMaps, as the pod sees them."""
    cfg = tmp_path / "gonets.toml"
    cfg.write_text(configmap(docs, "gonets-config")["data"]["gonets.toml"], encoding="utf-8")
    env = {k: v for k, v in configmap(docs, "gonets-env")["data"].items()}
    env["GONETS_CONFIG"] = str(cfg)
    return load_settings(env)


def sandbox_accounts() -> dict[str, str]:
    raw = tomllib.loads((ROOT / "config" / "sandbox.toml").read_text(encoding="utf-8"))
    return {name: a["provider"] for name, a in raw.get("accounts", {}).items()}


# --- schemas and lint --------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _schemas_parsed_once() -> Iterator[None]:
    """kubernetes-validate re-reads its (large) JSON schemas for every object; read each once."""
    import functools

    import kubernetes_validate.utils as kv

    original = kv.schema_contents
    kv.schema_contents = functools.lru_cache(maxsize=None)(original)
    yield
    kv.schema_contents = original


def keda_schema() -> dict[str, Any]:
    return yaml.safe_load((K8S / "schemas" / "keda-v2.16.yaml").read_text(encoding="utf-8"))


def keda_validate(doc: dict[str, Any]) -> None:
    schema = keda_schema()
    jsonschema.Draft202012Validator(
        {"$defs": schema["$defs"], **schema[doc["kind"]]}).validate(doc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_is_valid_in_strict_mode(
        rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    assert docs
    for doc in docs:
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("keda.sh/"):
            try:
                keda_validate(doc)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{where}: {'.'.join(map(str, exc.absolute_path))}: {exc.message}")
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where} (Kubernetes {version}): "
                            f"{'.'.join(map(str, exc.path))}: {exc.message}")


def test_strict_validation_catches_what_a_cluster_would_reject(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The validators are not rubber stamps: a misspelt field fails each of them."""
    dep = next(iter(workers(rendered["prod"]).values()))
    bad = yaml.safe_load(yaml.safe_dump(dep))
    gonets_container(bad)["livenesProbe"] = {"httpGet": {"path": "/healthz", "port": 8081}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
    so = of_kind(rendered["prod"], "ScaledObject")[0]
    for mutate in (lambda s: s["spec"].__setitem__("maxReplicas", 3),
                   lambda s: s["spec"]["triggers"][0]["metadata"].__setitem__("listname", "x"),
                   lambda s: s["spec"]["triggers"][0]["metadata"].__setitem__("listLength", "5k")):
        bad_so = yaml.safe_load(yaml.safe_dump(so))
        mutate(bad_so)
        with pytest.raises(jsonschema.ValidationError):
            keda_validate(bad_so)


def test_yaml_lints_clean() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig("""
extends: default
rules:
  document-start: disable
  line-length: {max: 110}
  comments: {min-spaces-from-content: 1}
  truthy: {check-keys: false}
""")
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    problems = [f"{f.relative_to(ROOT)}:{p.line}: {p.desc}"
                for f in files for p in linter.run(f.read_text(encoding="utf-8"), conf)]
    assert not problems, "\n".join(problems)


# --- pools, roles and commands -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_lands_in_the_overlays_namespace(
        rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    (ns,) = of_kind(docs, "Namespace")
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == ns["metadata"]["name"], \
                f"{overlay}: {d['kind']}/{d['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pool_has_a_worker_and_an_autoscaler(
        rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    settings = shipped_settings(docs, tmp_path)
    pools = {a.name for a in settings.accounts}
    # every account the project ships (the sandbox config `make run` uses) runs in the cluster
    missing = set(sandbox_accounts()) - pools
    assert not missing, (
        f"accounts {sorted(missing)} of config/sandbox.toml do not run in Kubernetes: add them "
        "to k8s/base/gonets.toml and give each a pool file in k8s/base/workers/ (copy smsc.yaml) "
        "and an HPA in k8s/components/hpa/hpa-workers.yaml")
    deployments = workers(docs)
    assert set(deployments) == pools
    targets = {(s["spec"]["scaleTargetRef"].get("kind", "Deployment"),
                s["spec"]["scaleTargetRef"]["name"])
               for s in of_kind(docs, "ScaledObject")}
    hpa_targets = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
                   for h in of_kind(docs, "HorizontalPodAutoscaler")}
    for pool, d in deployments.items():
        key = ("Deployment", d["metadata"]["name"])
        if overlay in KEDA_OVERLAYS:
            assert key in targets, f"pool {pool} has no ScaledObject"
            assert key not in hpa_targets
        else:
            assert key in hpa_targets, f"pool {pool} has no HorizontalPodAutoscaler"
            assert not of_kind(docs, "ScaledObject")
            assert not of_kind(docs, "TriggerAuthentication")
        assert "replicas" not in d["spec"], "the autoscaler owns the replica count"


def test_every_container_command_parses_and_probes_what_it_serves(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The args are a real `gonets` command line, and every probe asks the port that command
    listens on, on the path that answers there."""
    parser = build_parser()
    for overlay, docs in rendered.items():
        for d in of_kind(docs, "Deployment"):
            name = f"{overlay} {d['metadata']['name']}"
            c = gonets_container(d)
            assert "command" not in c, "the image's entry point is `gonets`"
            args = parser.parse_args(c["args"])
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            paths = {"livenessProbe": "/healthz", "readinessProbe": "/readyz",
                     "startupProbe": "/healthz"}
            if args.command == "worker":
                # explicit, not defaults that might change under us
                for flag in ("--processes", "--threads", "--health-port"):
                    assert flag in c["args"], f"{name}: {flag}"
            if args.command == "api":
                assert args.host == "0.0.0.0", f"{name}: listens on loopback only"
                port = args.port
                paths = {k: "/healthz" for k in paths}  # the API's own health route
            else:
                port = getattr(args, "health_port", None)
                assert port, f"{name}: `gonets {args.command}` serves no health endpoint"
            for probe, path in paths.items():
                if probe in c:
                    get = c[probe]["httpGet"]
                    assert get["path"] == path, f"{name} {probe}"
                    assert ports.get(get["port"], get["port"]) == port, f"{name} {probe}"


def test_the_api_service_reaches_the_api(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, docs in rendered.items():
        for svc in of_kind(docs, "Service"):
            backends = [d for d in workloads(docs)
                        if selects({"matchLabels": svc["spec"]["selector"]},
                                   d["spec"]["template"]["metadata"]["labels"])]
            assert backends, f"{overlay}: Service {svc['metadata']['name']} selects no pod"
            for d in backends:
                named = {p["name"] for c in d["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])}
                for port in svc["spec"]["ports"]:
                    assert port["targetPort"] in named, svc["metadata"]["name"]


def test_the_shipped_config_builds_every_provider_from_mounted_secrets(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path, redis_url: str) -> None:
    """A worker pod's view: the ConfigMap, and the credential files of its own account."""
    from workers import providers
    from workers.providers.base import ProviderContext

    docs = rendered["prod"]
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    toml = configmap(docs, "gonets-config")["data"]["gonets.toml"]
    example = env_file(K8S / "secrets" / "credentials.example.env")
    for pool, d in workers(docs).items():
        mounted = credential_keys(d)
        for key in mounted:
            (secrets_dir / key).write_text(example[key], encoding="utf-8")
        cfg = tmp_path / "gonets.toml"
        cfg.write_text(toml.replace(SECRETS_MOUNT, f"{secrets_dir}/"), encoding="utf-8")
        env = dict(configmap(docs, "gonets-env")["data"], GONETS_CONFIG=str(cfg),
                   GONETS_REDIS_URL=redis_url)
        settings = load_settings(env)
        account = settings.account(pool)
        if account.provider in providers.REGISTRY:
            client = redis.Redis.from_url(redis_url)
            try:
                providers.build(account, ProviderContext(settings, client))
            finally:
                client.close()
        for key, ref in account.credentials.items():
            assert account.secret(key) == example[Path(ref.removeprefix("file:")).name]
        for f in secrets_dir.iterdir():
            f.unlink()


#: credentials the HTTP API itself reads, to authenticate the providers' webhooks:
#: producers/http/bepaid_webhook.py (the shop's id and key), producers/http/smsc_webhook.py
#: (an account's optional callback_secret)
API_READS = {"bepaid": {"shop_id", "secret_key"}}
API_READS_ANY = {"callback_secret"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_mounts_the_credentials_its_webhooks_check(
        rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    settings = shipped_settings(docs, tmp_path)
    wanted = {credential_file(ref) for a in settings.accounts for key, ref in a.credentials.items()
              if key in API_READS.get(a.provider, set()) | API_READS_ANY}
    for d in of_kind(docs, "Deployment"):
        if gonets_container(d)["args"][0] == "api":
            mounted = credential_keys(d)
            assert wanted <= mounted, (
                f"{overlay}: the API answers webhooks with {sorted(wanted - mounted)} unmounted; "
                "add them to the gonets-credentials items of k8s/base/api.yaml")
            assert mounted <= wanted, f"{overlay}: the API mounts secrets it never reads"


# --- pod hygiene -------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down_limited_and_probed(
        rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    for d in workloads(rendered[overlay]):
        name = f"{overlay} {d['kind']}/{d['metadata']['name']}"
        pod = d["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, name
        assert psc.get("runAsUser", 0) != 0, name
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        # Service links would inject GONETS_REDIS_PORT & co., which the settings reject
        assert pod.get("enableServiceLinks") is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"] + pod.get("initContainers", []):
            cname = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, cname
            assert sc.get("readOnlyRootFilesystem") is True, cname
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], cname
            assert not sc.get("capabilities", {}).get("add"), cname
            assert not sc.get("privileged"), cname
            assert sc.get("runAsUser", psc.get("runAsUser")) not in (None, 0), cname
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    assert res in c.get("resources", {}).get(kind, {}), f"{cname}: {kind}.{res}"
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in c, f"{cname}: {probe}"
            # scratch space on a read-only root: /tmp is an emptyDir
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], cname
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{cname}: untagged"
            assert not image.endswith(":latest"), cname


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_the_worker_drain(
        rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    drain_s = shipped_settings(docs, tmp_path).drain_timeout_s
    for pool, d in workers(docs).items():
        env = {e["name"]: e.get("value") for e in gonets_container(d).get("env", [])}
        pod_drain = float(env.get("GONETS_DRAIN_TIMEOUT_S") or drain_s)
        grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= pod_drain + DRAIN_MARGIN_S, (
            f"{overlay} pool {pool}: SIGKILL after {grace}s would cut a {pod_drain}s drain short")


def test_a_shorter_grace_period_is_caught(rendered: dict[str, list[dict[str, Any]]],
                                          tmp_path: Path) -> None:
    docs = yaml.safe_load_all(yaml.safe_dump_all(rendered["prod"]))
    docs = list(docs)
    for d in workers(docs).values():
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
    with pytest.raises(AssertionError, match="SIGKILL"):
        test_grace_period_outlasts_the_worker_drain({"prod": docs}, "prod", tmp_path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdbs_cover_the_workers(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    pdbs = of_kind(docs, "PodDisruptionBudget")
    covered = [d for d in of_kind(docs, "Deployment")
               if any(selects(p["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
                      for p in pdbs)]
    assert {d["metadata"]["name"] for d in covered} == \
        {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    for p in pdbs:  # never a budget that blocks every eviction (a node drain would hang)
        assert p["spec"].get("maxUnavailable", 1) >= 1


# --- secrets -----------------------------------------------------------------------------


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def credential_file(ref: str) -> str:
    assert ref.startswith("file:" + SECRETS_MOUNT), f"{ref}: not a file of the mounted Secret"
    return ref[len("file:" + SECRETS_MOUNT):]


def credential_keys(d: dict[str, Any]) -> set[str]:
    vols = [v for v in d["spec"]["template"]["spec"].get("volumes", [])
            if v.get("secret", {}).get("secretName") == "gonets-credentials"]
    if not vols:
        return set()
    (vol,) = vols
    items = vol["secret"].get("items")
    assert items, "a worker mounts only its own account's keys (secret items)"
    assert all(i["key"] == i["path"] for i in items)
    return {i["key"] for i in items}


SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|DSN|API_KEY|AUTH", re.I)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_a_manifest(rendered: dict[str, list[dict[str, Any]]],
                                          overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    assert not of_kind(docs, "Secret"), "Secrets are created by the operator, never shipped"
    text = yaml.safe_dump_all(docs)
    assert "CHANGE_ME" not in text
    # a Redis URL with a literal password
    for url in re.findall(r"redis(?:s|\+sentinel)?://[^\s'\"]+", text):
        userinfo = urlsplit(url).netloc.rpartition("@")[0]
        assert not userinfo or re.fullmatch(r":?\$\([A-Z_]+\)", userinfo), url
    referenced: dict[str, set[str]] = {}
    for d in workloads(docs):
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for e in c.get("env", []):
                if SECRET_NAMES.search(e["name"]):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    assert ref, f"{d['metadata']['name']}: {e['name']} must come from a Secret"
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    referenced.setdefault(ref["name"], set()).add(ref["key"])
        for v in pod.get("volumes", []):
            if "secret" in v:
                referenced.setdefault(v["secret"]["secretName"], set()).update(
                    i["key"] for i in v["secret"].get("items", []))
    for ta in of_kind(docs, "TriggerAuthentication"):
        for ref in ta["spec"].get("secretTargetRef", []):
            referenced.setdefault(ref["name"], set()).add(ref["key"])
    # every key a pod or KEDA needs is in the example file an operator fills in
    examples = {
        "gonets-redis": "redis.external.example.env" if overlay in EXTERNAL_REDIS
        else "redis.example.env",
        "gonets-credentials": "credentials.example.env",
    }
    assert set(referenced) <= set(examples), referenced
    for secret, keys in referenced.items():
        example = env_file(K8S / "secrets" / examples[secret])
        assert keys <= set(example), f"{secret}: {keys - set(example)} not in {examples[secret]}"
    # credentials in the config are references to the mounted Secret's files
    settings = shipped_settings(docs, tmp_path)
    for pool, d in workers(docs).items():
        account = settings.account(pool)
        wanted = {credential_file(ref) for ref in account.credentials.values()}
        assert credential_keys(d) == wanted, f"pool {pool} mounts other accounts' secrets"


def test_example_secret_files_hold_placeholders_only() -> None:
    files = sorted((K8S / "secrets").glob("*.example.env"))
    assert len(files) >= 3
    not_secret = {"tls"}  # enable/disable
    for f in files:
        for key, value in env_file(f).items():
            if key not in not_secret:
                assert "CHANGE_ME" in value, f"{f.name}: {key} looks like a real value"


# --- images and the Dockerfile -----------------------------------------------------------


def test_images_are_set_only_by_kustomize(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for f in (K8S / "base").rglob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            for image in re.findall(r"'image': '([^']+)'", repr(doc)):
                assert image in ("gonets", "redis"), f"{f}: image {image!r} must be a bare name"
    for f in (K8S / "overlays").rglob("*.yaml"):
        assert "image:" not in f.read_text(encoding="utf-8"), f"{f}: use kustomize `images:`"
    images = {gonets_container(d)["image"] for d in of_kind(rendered["prod"], "Deployment")}
    assert images == {"registry.example.com/gonets:0.1.0"}
    assert {gonets_container(d)["image"] for d in of_kind(rendered["dev"], "Deployment")} == \
        {"gonets:dev"}


def docker_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def test_dockerfile_is_multi_stage_slim_non_root_and_cache_free(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    res = subprocess.run([_tool("hadolint"), "--failure-threshold", "info",
                          str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    ins = docker_instructions(ROOT / "Dockerfile")
    froms = [i for i, (k, _) in enumerate(ins) if k == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for k, v in ins if k == "ARG" and "=" in v}
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.1[1-9][.\d]*-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    final = ins[froms[-1]:]
    users = [v for k, v in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "final stage runs as non-root"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "numeric uid, so runAsNonRoot can verify it"
    uid = int(users[-1].split(":")[0])
    for d in of_kind(rendered["prod"], "Deployment"):  # the pods run as the image's user
        assert d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    final_runs = " ".join(v for k, v in final if k == "RUN")
    for forbidden in ("gcc", "build-essential", "pip install", "apt-get install"):
        assert forbidden not in final_runs, f"final stage: {forbidden}"
    for k, v in ins:
        if k == "RUN" and "pip install" in v:
            assert "--no-cache-dir" in v
    assert any(k == "COPY" and v.startswith("--from=") for k, v in final)
    assert [v for k, v in final if k == "ENTRYPOINT"] == ['["gonets"]']


def docker_context(root: Path) -> set[str]:
    """The files ``docker build`` would send, by .dockerignore's rules (last match wins; a
    pattern matching a parent directory matches everything under it)."""
    rules = []
    for line in (root / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line.lstrip("!")).strip("/")
        rx = re.escape(pat).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((neg, re.compile("^" + rx.replace("\0", ".*") + "$")))

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        verdict = False
        for neg, rx in rules:
            if any(rx.match(c) for c in candidates):
                verdict = not neg
        return verdict

    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.split()
    return {f for f in files if not excluded(f)}


def test_dockerignore_sends_the_packages_and_nothing_else() -> None:
    ctx = docker_context(ROOT)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in include]
    assert {"pyproject.toml", "README.md"} <= ctx
    copied = {v.split()[0].rstrip("/") for k, v in docker_instructions(ROOT / "Dockerfile")
              if k == "COPY" and not v.startswith("--from")}
    for pkg in packages:
        assert f"{pkg}/__init__.py" in ctx, f"package {pkg} missing from the build context"
        assert pkg in copied, f"package {pkg} is not copied into the image"
    tracked = subprocess.run(["git", "ls-files", *packages], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    lost = {f for f in tracked if not f.endswith(".pyc")} - ctx
    assert not lost, f"package files the image would lack: {sorted(lost)[:5]}"
    for f in ctx:
        top = f.split("/")[0]
        assert top in set(packages) | {"pyproject.toml", "README.md"}, f"{f} in the build context"
        assert not f.endswith((".env", ".pyc")), f


# --- autoscaling -------------------------------------------------------------------------


def keda_depth(r: redis.Redis, key: str) -> int:
    """What KEDA's redis scaler reports for ``listName``: by the key's type, HLEN for a hash,
    LLEN for a list (and a missing key), ZCARD / SCARD for sorted sets / sets."""
    kind = r.type(key).decode()
    count = {"hash": r.hlen, "list": r.llen, "zset": r.zcard, "set": r.scard, "none": r.llen}
    return int(count[kind](key))


@pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
def test_scaledobjects_watch_every_queue_of_their_pool(
        rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    settings = shipped_settings(docs, tmp_path)
    deployments = workers(docs)
    for so in of_kind(docs, "ScaledObject"):
        (pool,) = [p for p, d in deployments.items()
                   if d["metadata"]["name"] == so["spec"]["scaleTargetRef"]["name"]]
        ns = f"{settings.namespace}-q"
        queues = queues_for(settings, pool)  # exactly what `gonets worker --pool` consumes
        want = {f"{ns}:{q}.msgs" for q in queues} | {f"{ns}:{q}.DQ.msgs" for q in queues}
        triggers = so["spec"]["triggers"]
        assert {t["metadata"]["listName"] for t in triggers} == want
        for t in triggers:
            assert t["type"] == "redis"
            assert t["authenticationRef"]["name"] in \
                {a["metadata"]["name"] for a in of_kind(docs, "TriggerAuthentication")}
            assert t["metadata"]["activationListLength"] == "0"  # any message wakes the pool
            if ".DQ." in t["metadata"]["listName"]:  # delayed work wakes, never inflates
                assert int(t["metadata"]["listLength"]) >= 100_000


def test_the_watched_keys_count_ready_in_flight_and_delayed_messages(
        rendered: dict[str, list[dict[str, Any]]], redis_url: str) -> None:
    """Real dramatiq messages in a real Redis, counted under the ScaledObject's listNames."""
    from dramatiq.brokers.redis import RedisBroker

    from core.broker import build_broker, enqueue

    so = by_name(rendered["prod"], "ScaledObject", "gonets-worker-smsc")
    names = {t["name"]: t["metadata"]["listName"] for t in so["spec"]["triggers"]}
    settings = Settings(redis_url=redis_url)
    broker: RedisBroker = build_broker(settings)
    r = redis.Redis.from_url(redis_url)
    try:
        urgent, bulk, status = pool_queues("smsc")
        for q in (urgent, bulk, status):
            broker.declare_queue(q)
        for i in range(3):
            enqueue(broker, urgent, "send_sms", f"id-{i}")
        for i in range(2):
            enqueue(broker, bulk, "send_sms", f"id-b{i}")
        enqueue(broker, status, "poll_status", "id-p", delay_ms=3_600_000)  # a poll in an hour
        depth = {n: keda_depth(r, key) for n, key in names.items()}
        assert depth == {"urgent": 3, "bulk": 2, "status": 0, "urgent-delayed": 0,
                         "bulk-delayed": 0, "status-delayed": 1}
        # a message a worker has taken but not finished still counts (no scale-down under it)
        consumer = broker.consume(urgent, prefetch=1, timeout=1000)
        taken = next(m for m in consumer if m is not None)
        assert r.llen(names["urgent"].removesuffix(".msgs")) == 2
        assert keda_depth(r, names["urgent"]) == 3
        consumer.ack(taken)
        assert keda_depth(r, names["urgent"]) == 2
        consumer.close()
    finally:
        broker.close()
        r.close()


def binds(account: Any) -> int:
    """Simultaneous SMPP binds the provider allows this login (smsc-smpp.md: one, unless the
    account is set up for MCONn, n <= 9)."""
    return int(account.options.get("mcon") or 1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_are_capped_where_more_pods_add_nothing(
        rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path) -> None:
    docs = rendered[overlay]
    settings = shipped_settings(docs, tmp_path)
    caps = {s["spec"]["scaleTargetRef"]["name"]: s["spec"]["maxReplicaCount"]
            for s in of_kind(docs, "ScaledObject")}
    caps.update({h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
                 for h in of_kind(docs, "HorizontalPodAutoscaler")})
    for pool, d in workers(docs).items():
        account = settings.account(pool)
        cap = caps[d["metadata"]["name"]]
        threads = build_parser().parse_args(gonets_container(d)["args"]).threads
        if account.provider in SMPP_PROVIDERS:
            # a pod past the login's binds only stands by (bind leases, workers/smpp/lease.py)
            assert cap <= binds(account), f"{pool}: more pods than binds"
        elif account.provider != "bepaid":
            # one thread sends about one message per second at worst; pods past the rate
            # limit only wait on it
            assert cap <= math.ceil(account.limits.rate_per_s / threads) + 2, pool


def test_keda_and_hpa_agree_on_caps(rendered: dict[str, list[dict[str, Any]]]) -> None:
    so = {s["spec"]["scaleTargetRef"]["name"]: s["spec"]["maxReplicaCount"]
          for s in of_kind(rendered["prod"], "ScaledObject")}
    hpa = {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
           for h in of_kind(rendered["hpa"], "HorizontalPodAutoscaler")}
    assert so == hpa


# --- network policy ----------------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        op, key, values = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Pod:
    def __init__(self, ns: str, labels: dict[str, str]) -> None:
        self.ns, self.labels = ns, labels


class Net:
    """Kubernetes NetworkPolicy semantics, enough to answer "may A reach B on port P"."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.policies = of_kind(docs, "NetworkPolicy")

    def _applies(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        return [p for p in self.policies
                if p["metadata"].get("namespace") == pod.ns
                and selects(p["spec"]["podSelector"], pod.labels)
                and direction in p["spec"].get("policyTypes", ["Ingress"])]

    @staticmethod
    def _port_ok(rule: dict[str, Any], port: int, proto: str) -> bool:
        ports = rule.get("ports")
        return not ports or any(p.get("protocol", "TCP") == proto and p.get("port") in (None, port)
                                for p in ports)

    @staticmethod
    def _peer_ok(peer: dict[str, Any], other: Pod | str, policy_ns: str) -> bool:
        if isinstance(other, str):
            if "ipBlock" not in peer:
                return False
            ip = ipaddress.ip_address(other)
            block = peer["ipBlock"]
            return ip in ipaddress.ip_network(block["cidr"]) and not any(
                ip in ipaddress.ip_network(x) for x in block.get("except", []))
        if "ipBlock" in peer:
            return False
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.ns}):
                return False
        elif other.ns != policy_ns:
            return False
        return selects(peer.get("podSelector", {}), other.labels)

    def allowed(self, src: Pod, dst: Pod | str, port: int, proto: str = "TCP") -> bool:
        egress = self._applies(src, "Egress")
        if egress and not any(
                self._port_ok(rule, port, proto)
                and (not rule.get("to") or any(self._peer_ok(p, dst, src.ns) for p in rule["to"]))
                for pol in egress for rule in pol["spec"].get("egress", [])):
            return False
        if isinstance(dst, str):
            return True
        ingress = self._applies(dst, "Ingress")
        return not ingress or any(
            self._port_ok(rule, port, proto)
            and (not rule.get("from") or any(self._peer_ok(p, src, dst.ns) for p in rule["from"]))
            for pol in ingress for rule in pol["spec"].get("ingress", []))


def pods(docs: list[dict[str, Any]]) -> dict[str, Pod]:
    return {d["metadata"]["name"]: Pod(d["metadata"]["namespace"],
                                       d["spec"]["template"]["metadata"]["labels"])
            for d in workloads(docs)}


def test_every_role_that_serves_metrics_exposes_and_annotates_its_port(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    """Like the probes: the `metrics` port and the prometheus.io annotations name the port the
    command serves /metrics on (GONETS_METRICS_PORT from gonets-env; a worker serves it with
    one process), apart from the health port; roles that serve none announce none."""
    parser = build_parser()
    for overlay, docs in rendered.items():
        port = shipped_settings(docs, tmp_path).metrics_port
        assert port, f"{overlay}: GONETS_METRICS_PORT is not set: nothing can be scraped"
        scraped = set()
        for d in of_kind(docs, "Deployment"):
            name = f"{overlay} {d['metadata']['name']}"
            c = gonets_container(d)
            args = parser.parse_args(c["args"])
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            notes = d["spec"]["template"]["metadata"].get("annotations", {})
            serves = args.command == "scheduler" or (args.command == "worker"
                                                     and args.processes == 1)
            if not serves:
                assert "metrics" not in ports and "prometheus.io/scrape" not in notes, name
                continue
            assert ports.get("metrics") == port, f"{name}: metrics port"
            assert port != getattr(args, "health_port", None), f"{name}: shares the health port"
            assert notes.get("prometheus.io/scrape") == "true", name
            assert notes.get("prometheus.io/port") == str(port), name
            assert notes.get("prometheus.io/path") == "/metrics", name
            scraped.add(d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])
        assert scraped == {"worker", "scheduler"}, overlay


PUBLIC = "203.0.113.10"  # a public address (TEST-NET-3) standing in for a provider


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_paths(rendered: dict[str, list[dict[str, Any]]], overlay: str,
                       tmp_path: Path) -> None:
    docs = rendered[overlay]
    net = Net(docs)
    all_pods = pods(docs)
    ns = next(iter(all_pods.values())).ns
    stranger = Pod(ns, {"app": "something-else"})
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})
    keda = Pod("keda", {"app": "keda-operator"})
    redis_pod = all_pods.get("gonets-redis")
    redis_port = 6379 if redis_pod else 6380
    settings = shipped_settings(docs, tmp_path)
    gonets_roles = {n: p for n, p in all_pods.items() if n != "gonets-redis"}
    sentry = overlay == "all-components"  # the sentry-egress component
    # component -> (may reach a public HTTPS address, may reach a private one)
    expected = {"worker": (True, False), "callbacks": (True, True),
                "api": (sentry, False), "scheduler": (sentry, False)}
    for name, pod in gonets_roles.items():
        component = pod.labels["app.kubernetes.io/component"]
        assert net.allowed(pod, dns, 53, "UDP"), name
        if redis_pod:
            assert net.allowed(pod, redis_pod, 6379), f"{name} -> redis"
        else:
            assert net.allowed(pod, PUBLIC, redis_port), f"{name} -> external redis"
        public, private = expected[component]
        assert net.allowed(pod, PUBLIC, 443) == public, f"{name} -> internet"
        assert net.allowed(pod, "10.1.2.3", 443) == private, f"{name} -> private address"
        assert not net.allowed(pod, "169.254.169.254", 80), f"{name} -> cloud metadata"
        assert not net.allowed(pod, PUBLIC, 22), name
        for other_name, other in gonets_roles.items():
            if other_name != name and other.labels["app.kubernetes.io/component"] != "api":
                assert not net.allowed(pod, other, 8081), f"{name} -> {other_name}"
        assert not net.allowed(stranger, pod, 9999), f"any pod -> {name}"
        if component == "api":
            assert net.allowed(stranger, pod, 8080), "the API is reachable"
        # Prometheus scrapes workers and the scheduler with the prometheus component only
        prometheus = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
        scrape = overlay == "all-components" and component in ("worker", "scheduler")
        assert net.allowed(prometheus, pod, 9100) == scrape, f"prometheus -> {name}"
        assert not net.allowed(stranger, pod, 9100), f"any pod -> {name} metrics"
    for pool, d in workers(docs).items():
        pod = all_pods[d["metadata"]["name"]]
        account = settings.account(pool)
        ports = {urlsplit(u).port or (443 if u.startswith("https") else 80)
                 for u in account.base_urls} or {443}
        if account.smpp_port:
            ports.add(account.smpp_port)
        for port in ports:
            assert net.allowed(pod, PUBLIC, port), f"pool {pool} cannot reach its provider :{port}"
    if overlay == "sentinel":  # the Sentinels: asked by every role, talking among themselves
        for name, pod in gonets_roles.items():
            assert net.allowed(pod, redis_pod, 26379), f"{name} -> sentinel"
        for port in (6379, 26379):
            assert net.allowed(redis_pod, redis_pod, port), f"redis <-> redis :{port}"
            assert not net.allowed(redis_pod, PUBLIC, port), f"redis -> internet :{port}"
        assert not net.allowed(stranger, redis_pod, 26379), "sentinel open to any pod"
        assert not net.allowed(keda, redis_pod, 26379)
    if redis_pod:
        assert not net.allowed(stranger, redis_pod, 6379), "redis open to any pod"
        assert net.allowed(keda, redis_pod, 6379) == (overlay in KEDA_OVERLAYS), \
            "KEDA's operator reads the queue depths"


def test_every_component_is_rendered_by_the_suite() -> None:
    assert sorted(p.name for p in (K8S / "components").iterdir() if p.is_dir()) == \
        sorted(COMPONENTS + list(ALTERNATIVES))
    for component, overlay in ALTERNATIVES.items():
        assert overlay in OVERLAYS
        text = (K8S / "overlays" / overlay / "kustomization.yaml").read_text(encoding="utf-8")
        assert f"components/{component}" in text


def test_the_bitrix24_component_mounts_the_app_credentials_for_the_callbacks(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["all-components"]
    spec = by_name(docs, "Deployment", "gonets-callbacks")["spec"]["template"]["spec"]
    [mount] = [m for m in spec["containers"][0]["volumeMounts"]
               if m["name"] == "bitrix24-credentials"]
    assert mount["mountPath"] + "/" == SECRETS_MOUNT and mount["readOnly"] is True
    [vol] = [v for v in spec["volumes"] if v["name"] == "bitrix24-credentials"]
    assert {i["key"] for i in vol["secret"]["items"]} == {"bitrix24-client-id",
                                                         "bitrix24-client-secret"}
    example = (K8S / "secrets" / "credentials.example.env").read_text(encoding="utf-8")
    assert "bitrix24-client-id=" in example and "bitrix24-client-secret=" in example
    # without the component the callbacks pod mounts no credentials at all
    plain = by_name(rendered["prod"], "Deployment", "gonets-callbacks")
    assert "bitrix24-credentials" not in str(plain)


# --- Redis under Sentinel ----------------------------------------------------------------


def _script(name: str) -> str:
    return (K8S / "components" / "redis-sentinel" / name).read_text(encoding="utf-8")


def test_the_sentinel_overlay_runs_three_redis_pods_and_every_role_asks_their_sentinels(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    from core.redis_conn import parse_sentinel

    docs = rendered["sentinel"]
    sts = by_name(docs, "StatefulSet", "gonets-redis")
    replicas = sts["spec"]["replicas"]
    assert replicas == 3
    pod = sts["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"redis", "sentinel"}
    assert containers["redis"]["command"] == ["sh", "/scripts/redis.sh"]
    assert "args" not in containers["redis"], "the script builds redis-server's arguments"
    assert containers["sentinel"]["command"] == ["sh", "/scripts/sentinel.sh"]
    assert {p["name"]: p["containerPort"] for p in containers["sentinel"]["ports"]} == \
        {"sentinel": 26379}
    # the scripts are mounted from the generated ConfigMap, whatever its hash
    (vol,) = [v for v in pod["volumes"] if v["name"] == "scripts"]
    cm = by_name(docs, "ConfigMap", vol["configMap"]["name"])
    assert set(cm["data"]) == {"common.sh", "redis.sh", "sentinel.sh"}
    for name, text in cm["data"].items():
        res = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
        assert res.returncode == 0, f"{name}: {res.stderr}"
    # the names the scripts use are the StatefulSet's pods under its headless Service
    headless = by_name(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]}["sentinel"] == 26379
    common = cm["data"]["common.sh"]
    master = re.search(r"^MASTER_NAME=(\S+)$", common, re.M)
    assert master and f"{sts['spec']['serviceName']}." in common
    quorum = re.search(r"sentinel monitor \$MASTER_NAME \$master 6379 (\d+)",
                       cm["data"]["sentinel.sh"])
    assert quorum and replicas // 2 < int(quorum.group(1)) <= replicas, "a majority decides"
    # every Gonets container asks these Sentinels for this master, with the Secret's password
    want = {(f"gonets-redis-{i}.{sts['spec']['serviceName']}", 26379) for i in range(replicas)}
    for d in of_kind(docs, "Deployment"):
        env = {e["name"]: e for e in gonets_container(d)["env"]}
        url = env["GONETS_REDIS_URL"]["value"]
        addr = parse_sentinel(url.replace("$(REDIS_PASSWORD)", "pw"))
        assert set(addr.sentinels) == want, d["metadata"]["name"]
        assert addr.master == master.group(1) and addr.password == "pw"
        names = list(env)
        assert names.index("REDIS_PASSWORD") < names.index("GONETS_REDIS_URL")
    # a drain takes one Redis pod at a time: a majority of Sentinels stays
    (pdb,) = [p for p in of_kind(docs, "PodDisruptionBudget")
              if selects(p["spec"]["selector"], pod and sts["spec"]["template"]["metadata"]
                         ["labels"])]
    assert pdb["spec"]["maxUnavailable"] == 1
