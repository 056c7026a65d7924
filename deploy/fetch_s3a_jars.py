"""Install the s3a connector into pyspark's jars folder, matching pyspark's bundled Hadoop.

Run at image build time (Dockerfile); needs Maven Central. Versions are not hard-coded:

* the Hadoop version is read from pyspark's own ``hadoop-client-api-<version>.jar``
  (pyspark 4.3.0 bundles Hadoop 3.5.0);
* ``org.apache.hadoop:hadoop-aws:<that version>`` is fetched, and its runtime dependencies
  (the AWS SDK v2 ``software.amazon.awssdk:bundle`` among them) are read from its POM, with
  versions resolved from the ``hadoop-project`` parent POM: exactly the SDK Hadoop was built
  and tested with (the s3a docs warn against mixing SDK versions);
* every jar is checked against Maven Central's ``.sha1`` before it is installed.

    python deploy/fetch_s3a_jars.py [--jars-dir DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

MAVEN = "https://repo1.maven.org/maven2"
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# Provided by pyspark's shaded Hadoop client (or only needed for tests/optional features).
_SKIP_GROUPS = ("org.apache.hadoop",)
_RUNTIME_SCOPES = ("", "compile", "runtime")


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str

    def url(self, ext: str = "jar") -> str:
        return f"{MAVEN}/{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.name}-{self.version}.{ext}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.jar"


def hadoop_version(jars_dir: Path) -> str:
    """The Hadoop version pyspark bundles, from its ``hadoop-client-api-<version>.jar``."""
    found = sorted(
        m.group(1)
        for p in jars_dir.glob("hadoop-client-api-*.jar")
        if (m := re.match(r"hadoop-client-api-(.+)\.jar$", p.name))
    )
    if len(found) != 1:
        raise SystemExit(f"expected one hadoop-client-api jar in {jars_dir}, found {found}")
    return found[0]


def _text(node: ET.Element | None, tag: str) -> str:
    child = node.find(f"m:{tag}", _NS) if node is not None else None
    return (child.text or "").strip() if child is not None else ""


def pom_properties(pom: str) -> dict[str, str]:
    """``<properties>`` of a POM, plus ``project.version``."""
    root = ET.fromstring(pom)
    props = {"project.version": _text(root, "version") or _text(root.find("m:parent", _NS), "version")}
    node = root.find("m:properties", _NS)
    if node is not None:
        for child in node:
            props[child.tag.split("}", 1)[1]] = (child.text or "").strip()
    return props


def managed_versions(pom: str) -> dict[tuple[str, str], str]:
    """``<dependencyManagement>`` versions of a POM by (groupId, artifactId), unresolved."""
    root = ET.fromstring(pom)
    out: dict[tuple[str, str], str] = {}
    for dep in root.findall("m:dependencyManagement/m:dependencies/m:dependency", _NS):
        out[(_text(dep, "groupId"), _text(dep, "artifactId"))] = _text(dep, "version")
    return out


def resolve(value: str, props: dict[str, str]) -> str:
    """Substitute ``${name}`` references (repeatedly, for properties made of properties)."""
    for _ in range(10):
        new = re.sub(r"\$\{([^}]+)\}", lambda m: props.get(m.group(1), m.group(0)), value)
        if new == value:
            break
        value = new
    if "${" in value:
        raise SystemExit(f"cannot resolve {value!r} from the POM properties")
    return value


def runtime_dependencies(aws_pom: str, parent_pom: str) -> list[Artifact]:
    """hadoop-aws's non-optional compile/runtime dependencies outside Hadoop, versions resolved."""
    props = {**pom_properties(parent_pom), **pom_properties(aws_pom)}
    managed = managed_versions(parent_pom)
    deps: list[Artifact] = []
    for dep in ET.fromstring(aws_pom).findall("m:dependencies/m:dependency", _NS):
        group, name = _text(dep, "groupId"), _text(dep, "artifactId")
        if _text(dep, "scope") not in _RUNTIME_SCOPES or _text(dep, "optional") == "true":
            continue
        if group.startswith(_SKIP_GROUPS) or _text(dep, "type") not in ("", "jar"):
            continue
        version = _text(dep, "version") or managed.get((group, name), "")
        if not version:
            raise SystemExit(f"no version for {group}:{name} in hadoop-aws or hadoop-project")
        deps.append(Artifact(group, name, resolve(version, props)))
    return deps


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as resp:
        body: bytes = resp.read()
        return body


def install(artifact: Artifact, jars_dir: Path) -> None:
    body = _get(artifact.url())
    expected = _get(artifact.url("jar.sha1")).decode().split()[0].strip()
    actual = hashlib.sha1(body, usedforsecurity=False).hexdigest()
    if actual != expected:
        raise SystemExit(f"{artifact.filename}: sha1 {actual} does not match Maven Central's {expected}")
    (jars_dir / artifact.filename).write_bytes(body)
    print(f"installed {artifact.filename} ({len(body) // 1024} KiB, sha1 {actual})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--jars-dir", type=Path, default=None, help="pyspark's jars folder (default: the installed pyspark)")
    p.add_argument("--dry-run", action="store_true", help="print what would be installed")
    args = p.parse_args(argv)
    jars_dir = args.jars_dir
    if jars_dir is None:
        import pyspark

        jars_dir = Path(pyspark.__file__).resolve().parent / "jars"
    version = hadoop_version(jars_dir)
    hadoop_aws = Artifact("org.apache.hadoop", "hadoop-aws", version)
    parent = Artifact("org.apache.hadoop", "hadoop-project", version)
    deps = runtime_dependencies(_get(hadoop_aws.url("pom")).decode(), _get(parent.url("pom")).decode())
    for artifact in [hadoop_aws, *deps]:
        if args.dry_run:
            print(f"would install {artifact.group}:{artifact.name}:{artifact.version}")
        else:
            install(artifact, jars_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
