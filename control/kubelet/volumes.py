"""Pod volumes, as pure functions of the pod and the objects it names (upstream's volume manager and
its configmap, secret, downwardapi, projected, empty_dir and host_path plugins, pkg/volume/*; a
persistentVolumeClaim volume is its bound PersistentVolume's hostPath or local directory, bound in place).

    references(pod) -> {(plural, name): optional}     the ConfigMaps and Secrets to read first
    token_requests(pod) -> [TokenWant]                 the ServiceAccount tokens to request first
    plan(pod, objects, tokens, *, pod_dir, allocatable) -> VolumePlan   or VolumeError
    write_plan(plan) -> [volume names whose files changed]   (upstream's AtomicWriter)

A VolumePlan is data: the files of every volume (PAYLOADS, written under POD_DIR/volumes/<plugin>/<name>),
the directories to make (emptyDir), those to back with a tmpfs (emptyDir medium Memory), and the bind
mounts (target in the pod, source on the node, read-only) that the pod's mount namespace makes when its
sandbox is set up (netsim.place.PodPlace.volumes). Nothing here talks to the API or the kernel, so the
preparation can move with the runtime.

Files are written as upstream's AtomicWriter writes them: the payload into a fresh `..<timestamp>`
directory, `..data` a symlink to it swapped by rename(2), and each top-level name a symlink into
`..data`. A mounted directory therefore changes all at once when its ConfigMap or Secret changes; a
subPath mount binds one resolved file and, as upstream, never sees an update.

Kubesim's containers share one mount namespace per pod, so a volume is mounted where any container of
the pod mounts it; two containers mounting different things at one path is a VolumeError.
"""

from __future__ import annotations

import base64
import contextlib
import os
import posixpath
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.kubelet.envvars import pod_field, resource_field
from control.kubelet.workloads import ContainerError

__all__ = ["Mount", "TokenWant", "VolumeError", "VolumePlan", "plan", "references", "token_requests", "volume_of",
           "write_plan"]

FAILED_MOUNT = "FailedMount"
DEFAULT_MODE = 0o644  # upstream's default for configMap, secret, downwardAPI and projected volumes
EMPTY_DIR_MODE = 0o777
DATA_DIR = "..data"
# Plugins whose volumes are always mounted read-only (since upstream 1.10: the kubelet owns their files).
_READ_ONLY_PLUGINS = ("configMap", "secret", "downwardAPI", "projected")
_PLUGIN_DIRS = {"configMap": "kubernetes.io~configmap", "secret": "kubernetes.io~secret",
                "downwardAPI": "kubernetes.io~downward-api", "projected": "kubernetes.io~projected",
                "emptyDir": "kubernetes.io~empty-dir"}
# Volume fields of a downwardAPI item: only what cannot change under a running container's feet.
_VOLUME_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations")


class VolumeError(Exception):
    """A volume cannot be set up (yet): MESSAGE is upstream's FailedMount event text."""

    def __init__(self, volume: str, message: str, *, whole: bool = False):
        self.volume = volume
        self.message = message if whole else f'MountVolume.SetUp failed for volume "{volume}" : {message}'
        super().__init__(self.message)


def _unmounted(volume: str, claim: str, namespace: str, problem: str) -> VolumeError:
    """The volume manager's FailedMount while it cannot even find what to mount (a claim not found or not
    bound yet): upstream's "Unable to attach or mount volumes" text."""
    return VolumeError(volume, f"Unable to attach or mount volumes: unmounted volumes=[{volume}], unattached "
                               f"volumes=[{volume}]: error processing PVC {namespace}/{claim}: {problem}", whole=True)


@dataclass(frozen=True)
class Mount:
    target: str  # the path inside the pod
    source: str  # the path on the node (a volume directory, or a file or directory under it for subPath)
    read_only: bool


@dataclass(frozen=True)
class TokenWant:
    """A projected serviceAccountToken source: the token to request for the pod's ServiceAccount."""
    audience: str  # "" for the apiserver's own audiences
    expiration_seconds: int


@dataclass
class VolumePlan:
    payloads: dict[Path, dict[str, tuple[bytes, int]]] = field(default_factory=dict)  # dir -> {path: (data, mode)}
    directories: list[Path] = field(default_factory=list)
    memory: list[tuple[Path, str]] = field(default_factory=list)  # (dir, tmpfs size option or "")
    host_directories: list[Path] = field(default_factory=list)  # hostPath DirectoryOrCreate: made if missing
    mounts: list[Mount] = field(default_factory=list)


Objects = Mapping[tuple[str, str], "dict[str, Any] | None"]
Tokens = Mapping[TokenWant, str]


def _volumes(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [v for v in (pod.get("spec") or {}).get("volumes") or [] if isinstance(v, dict)]


def references(pod: Mapping[str, Any]) -> dict[tuple[str, str], bool]:
    """{("configmaps" | "secrets" | "persistentvolumeclaims", name): optional} for every ConfigMap, Secret and
    claim the pod's volumes name (a bound claim's PersistentVolume is read after it: volume_of)."""
    found: dict[tuple[str, str], bool] = {}

    def add(plural: str, source: Any, name_field: str) -> None:
        if isinstance(source, dict) and source.get(name_field):
            key = (plural, str(source[name_field]))
            found[key] = found.get(key, True) and bool(source.get("optional"))

    for volume in _volumes(pod):
        add("persistentvolumeclaims", volume.get("persistentVolumeClaim"), "claimName")
        add("configmaps", volume.get("configMap"), "name")
        add("secrets", volume.get("secret"), "secretName")
        for source in (volume.get("projected") or {}).get("sources") or []:
            add("configmaps", source.get("configMap"), "name")
            add("secrets", source.get("secret"), "name")
    return found


def token_requests(pod: Mapping[str, Any]) -> list[TokenWant]:
    wanted: list[TokenWant] = []
    for volume in _volumes(pod):
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if isinstance(token, dict):
                want = TokenWant(str(token.get("audience") or ""), int(token.get("expirationSeconds") or 3600))
                if want not in wanted:
                    wanted.append(want)
    return wanted


def _checked_path(volume: str, path: str) -> str:
    """A key's file path: relative, no `..` element, not starting with `..` (upstream's validatePath)."""
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or path.startswith(".."):
        raise VolumeError(volume, f"invalid path {path!r}: give a relative path without '..'")
    return posixpath.normpath(path)


def _key_files(volume: str, kind: str, obj: dict[str, Any] | None, source: dict[str, Any], name: str,
               mode: int) -> dict[str, tuple[bytes, int]]:
    """The files of a configMap or secret source: every key, or only ITEMS (key -> path, mode)."""
    if obj is None:
        if source.get("optional"):
            return {}
        raise VolumeError(volume, f'{kind.lower()} "{name}" not found')
    values: dict[str, bytes] = {}
    if kind == "secret":
        for key, encoded in (obj.get("data") or {}).items():
            values[key] = base64.b64decode(encoded) if isinstance(encoded, str) else b""
    else:
        values.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
        values.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()
                       if isinstance(v, str)})
    items = source.get("items") or []
    if not items:
        return {_checked_path(volume, key): (data, mode) for key, data in values.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = str(item.get("key") or "")
        if key not in values:
            if source.get("optional"):
                continue
            owner = "configmap references non-existent config key" if kind == "configMap" else \
                "references non-existent secret key"
            raise VolumeError(volume, f"{owner}: {key}")
        item_mode = item.get("mode")
        files[_checked_path(volume, str(item.get("path") or key))] = (values[key],
                                                                      mode if item_mode is None else int(item_mode))
    return files


def _downward_files(volume: str, pod: Mapping[str, Any], source: dict[str, Any], mode: int,
                    allocatable: Mapping[str, str]) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    for item in source.get("items") or []:
        path = _checked_path(volume, str(item.get("path") or ""))
        try:
            if "fieldRef" in item:
                field_path = str((item.get("fieldRef") or {}).get("fieldPath") or "")
                if field_path not in _VOLUME_FIELDS and not field_path.startswith(("metadata.labels[",
                                                                                   "metadata.annotations[")):
                    raise VolumeError(volume, f"fieldPath {field_path!r} is not supported in volumes: use "
                                      f"one of {', '.join(_VOLUME_FIELDS)} (or an env var for status fields)")
                value = pod_field(dict(pod), field_path, pod_ip="", host_ip="")
            elif "resourceFieldRef" in item:
                ref = item.get("resourceFieldRef") or {}
                value = resource_field(dict(pod), {}, ref, dict(allocatable))
            else:
                raise VolumeError(volume, f"downwardAPI item {path!r}: give fieldRef or resourceFieldRef")
        except ContainerError as exc:
            raise VolumeError(volume, exc.message) from None
        item_mode = item.get("mode")
        files[path] = (value.encode(), mode if item_mode is None else int(item_mode))
    return files


def _volume_files(volume: dict[str, Any], pod: Mapping[str, Any], objects: Objects, tokens: Tokens,
                  allocatable: Mapping[str, str]) -> dict[str, tuple[bytes, int]]:
    name = str(volume.get("name"))
    if "configMap" in volume or "secret" in volume:
        kind = "configMap" if "configMap" in volume else "secret"
        source = volume[kind] or {}
        ref = str(source.get("name") if kind == "configMap" else source.get("secretName") or "")
        plural = "configmaps" if kind == "configMap" else "secrets"
        mode = int(source.get("defaultMode", DEFAULT_MODE))
        return _key_files(name, kind, objects.get((plural, ref)), source, ref, mode)
    if "downwardAPI" in volume:
        source = volume["downwardAPI"] or {}
        return _downward_files(name, pod, source, int(source.get("defaultMode", DEFAULT_MODE)), allocatable)
    projected = volume.get("projected") or {}
    mode = int(projected.get("defaultMode", DEFAULT_MODE))
    files: dict[str, tuple[bytes, int]] = {}
    for source in projected.get("sources") or []:
        if "configMap" in source:
            ref = str((source["configMap"] or {}).get("name") or "")
            files.update(_key_files(name, "configMap", objects.get(("configmaps", ref)), source["configMap"], ref,
                                    mode))
        elif "secret" in source:
            ref = str((source["secret"] or {}).get("name") or "")
            files.update(_key_files(name, "secret", objects.get(("secrets", ref)), source["secret"], ref, mode))
        elif "downwardAPI" in source:
            files.update(_downward_files(name, pod, source["downwardAPI"] or {}, mode, allocatable))
        elif "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"] or {}
            want = TokenWant(str(token_source.get("audience") or ""),
                             int(token_source.get("expirationSeconds") or 3600))
            if want not in tokens:
                raise VolumeError(name, "failed to fetch token: no token was issued for the pod's ServiceAccount")
            # upstream writes the token 0600 unless the pod asks otherwise; kubesim's containers may run
            # as any user without fsGroup support, so the projected mode applies (0644 by default).
            files[_checked_path(name, str(token_source.get("path") or "token"))] = (tokens[want].encode(), mode)
    return files


def volume_of(claim: Mapping[str, Any] | None) -> str | None:
    """The PersistentVolume a claim is bound to, None while it is not."""
    if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
        return None
    name = (claim.get("spec") or {}).get("volumeName")
    return str(name) if name else None


_HOST_PATH_CHECKS = {"Directory": (Path.is_dir, "is not a directory"), "File": (Path.is_file, "is not a file")}


def _host_path(volume: str, source: Mapping[str, Any], result: VolumePlan) -> Path:
    """A hostPath source's directory, checked by its type as upstream's hostPath plugin checks it."""
    path = Path(str(source.get("path") or ""))
    kind = str(source.get("type") or "")
    if not path.is_absolute():
        raise VolumeError(volume, f"hostPath {str(path)!r} must be an absolute path")
    if kind == "DirectoryOrCreate":
        result.host_directories.append(path)
    elif kind in _HOST_PATH_CHECKS:
        check, problem = _HOST_PATH_CHECKS[kind]
        if not check(path):
            raise VolumeError(volume, f"hostPath type check failed: {path} {problem}")
    elif kind not in ("", "FileOrCreate"):
        raise VolumeError(volume, f"hostPath type {kind!r} is not supported by kubesim: use Directory, "
                                  "DirectoryOrCreate, File or none")
    return path


def _claim_source(volume: str, pod: Mapping[str, Any], source: Mapping[str, Any], objects: Objects,
                  result: VolumePlan) -> Path:
    """Where a persistentVolumeClaim volume lives on the node: its bound PersistentVolume's path."""
    claim_name = str(source.get("claimName") or "")
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    claim = objects.get(("persistentvolumeclaims", claim_name))
    if claim is None:
        raise _unmounted(volume, claim_name, namespace, "failed to fetch PVC from API server: "
                                                        f'persistentvolumeclaims "{claim_name}" not found')
    volume_name = volume_of(claim)
    if volume_name is None:
        raise _unmounted(volume, claim_name, namespace, "PVC is not bound")
    pv = objects.get(("persistentvolumes", volume_name))
    if pv is None:
        raise _unmounted(volume, claim_name, namespace, "failed to fetch PV from API server: "
                                                        f'persistentvolumes "{volume_name}" not found')
    spec = pv.get("spec") or {}
    if spec.get("volumeMode") == "Block":
        raise VolumeError(volume, "block volumes are not supported by kubesim: use volumeMode Filesystem")
    if isinstance(spec.get("hostPath"), dict):
        return _host_path(volume, spec["hostPath"], result)
    if isinstance(spec.get("local"), dict) and (spec["local"].get("path") or "").startswith("/"):
        return Path(str(spec["local"]["path"]))
    kinds = ", ".join(k for k in spec if isinstance(spec.get(k), dict) and k not in ("claimRef", "nodeAffinity",
                                                                                      "capacity"))
    raise VolumeError(volume, f"PersistentVolume {volume_name} is of type {kinds or 'none'}, which kubesim's kubelet "
                              "cannot mount: use hostPath or local volumes")


def _mounts_of(pod: Mapping[str, Any], sources: Mapping[str, tuple[Path, bool]]) -> list[Mount]:
    """The bind mounts of every container's volumeMounts (init containers first), one per target."""
    spec = pod.get("spec") or {}
    chosen: dict[str, Mount] = {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for mount in container.get("volumeMounts") or []:
            name, target = str(mount.get("name") or ""), str(mount.get("mountPath") or "")
            where = f"container {container.get('name')!r} volumeMount {name!r}"
            if name not in sources:
                raise VolumeError(name, f"{where}: the pod has no volume of that name; add it to spec.volumes")
            if not target.startswith("/"):
                raise VolumeError(name, f"{where}: mountPath {target!r} must be an absolute path")
            directory, always_ro = sources[name]
            sub = str(mount.get("subPath") or "")
            source = directory / _checked_path(name, sub) if sub else directory
            found = Mount(posixpath.normpath(target), str(source), always_ro or bool(mount.get("readOnly")))
            other = chosen.get(found.target)
            if other is not None and other != found:
                raise VolumeError(name, f"{where}: {found.target} is mounted differently by another container of "
                                  "the pod, and kubesim's containers share one mount namespace; mount one thing "
                                  "there")
            chosen[found.target] = found
    return list(chosen.values())


def _size_option(volume: str, limit: Any) -> str:
    if limit in (None, ""):
        return ""
    from control.api.quantity import QuantityError, parse_quantity
    try:
        return f"size={max(int(parse_quantity(limit).value), 4096)}"
    except QuantityError as exc:
        raise VolumeError(volume, f"emptyDir.sizeLimit {limit!r}: {exc}") from None


def plan(pod: Mapping[str, Any], objects: Objects, tokens: Tokens, *, pod_dir: Path,
         allocatable: Mapping[str, str]) -> VolumePlan:
    """Everything POD's volumes need on the node and in its mount namespace. OBJECTS holds every
    (plural, name) of references(pod), None for one that does not exist; TOKENS the token issued for each
    of token_requests(pod). VolumeError for a volume that cannot be set up (a missing, not optional,
    ConfigMap or Secret: the pod waits in ContainerCreating)."""
    result = VolumePlan()
    sources: dict[str, tuple[Path, bool]] = {}
    for volume in _volumes(pod):
        name = str(volume.get("name") or "")
        if isinstance(volume.get("persistentVolumeClaim"), dict):
            read_only = bool(volume["persistentVolumeClaim"].get("readOnly"))
            sources[name] = (_claim_source(name, pod, volume["persistentVolumeClaim"], objects, result), read_only)
            continue
        if isinstance(volume.get("hostPath"), dict):
            sources[name] = (_host_path(name, volume["hostPath"], result), False)
            continue
        plugin = next((p for p in _PLUGIN_DIRS if p in volume), None)
        if plugin is None:
            kinds = ", ".join(sorted(set(volume) - {"name"})) or "none"
            raise VolumeError(name, f"volume type {kinds} is not supported by kubesim: use configMap, secret, "
                              "emptyDir, downwardAPI, projected, persistentVolumeClaim or hostPath")
        directory = pod_dir / "volumes" / _PLUGIN_DIRS[plugin] / name
        sources[name] = (directory, plugin in _READ_ONLY_PLUGINS)
        if plugin == "emptyDir":
            result.directories.append(directory)
            empty = volume.get("emptyDir") or {}
            if empty.get("medium") == "Memory":
                result.memory.append((directory, _size_option(name, empty.get("sizeLimit"))))
            elif empty.get("medium") not in (None, ""):
                raise VolumeError(name, f"emptyDir.medium {empty.get('medium')!r}: use \"\" or \"Memory\"")
            continue
        result.payloads[directory] = _volume_files(volume, pod, objects, tokens, allocatable)
    result.mounts = _mounts_of(pod, sources)
    return result


# -- the atomic writer ---------------------------------------------------------------------------------------

def _current(directory: Path) -> dict[str, tuple[bytes, int]]:
    data = directory / DATA_DIR
    found: dict[str, tuple[bytes, int]] = {}
    if not data.is_dir():
        return found
    for root, _, names in os.walk(data, followlinks=True):
        for name in names:
            path = Path(root) / name
            found[str(path.relative_to(data))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return found


def write_payload(directory: Path, payload: Mapping[str, tuple[bytes, int]]) -> bool:
    """Make DIRECTORY hold exactly PAYLOAD, all at once; False if it already did (nothing written)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    if (directory / DATA_DIR).is_symlink() and _current(directory) == dict(payload):
        return False
    stamp = directory / time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    fresh = Path(str(stamp) + f"{time.time_ns() % 10**9:09d}")
    fresh.mkdir(mode=0o755)
    for relative, (data, mode) in payload.items():
        path = fresh / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_bytes(data)
        path.chmod(mode)
    old = os.readlink(directory / DATA_DIR) if (directory / DATA_DIR).is_symlink() else None
    swap = directory / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        swap.unlink()
    swap.symlink_to(fresh.name)
    swap.replace(directory / DATA_DIR)  # rename(2): readers see the old payload or the new, never a mix
    tops = {relative.split("/", 1)[0] for relative in payload}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{top}")
    for entry in directory.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops and entry.is_symlink():
            entry.unlink()
    if old and old != fresh.name:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True


def write_plan(volume_plan: VolumePlan) -> list[str]:
    """Write VOLUME_PLAN's files and make its directories; the names of the volumes whose files changed."""
    for directory in volume_plan.directories:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(EMPTY_DIR_MODE)
    for directory in volume_plan.host_directories:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)  # hostPath DirectoryOrCreate, as upstream
    changed = []
    for directory, payload in volume_plan.payloads.items():
        if write_payload(directory, payload):
            changed.append(directory.name)
    return changed
