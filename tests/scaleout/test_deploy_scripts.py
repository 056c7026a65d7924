"""The helpers the image and the compose stack run: the s3a jar resolver, the bucket
creator (against the moto S3 server), and the s3a settings Spark gets from the environment.

Spark on ``s3a://`` itself is checked only structurally on this machine: the hadoop-aws jars
are installed by the Dockerfile from Maven Central, which is not reachable here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from scaleout_support import ROOT, spark_home


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


PARENT_POM = """<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <groupId>org.apache.hadoop</groupId><artifactId>hadoop-project</artifactId><version>3.5.0</version>
  <properties>
    <aws-java-sdk-v2.version>2.32.9</aws-java-sdk-v2.version>
    <wildfly.version>2.1.4.Final</wildfly.version>
    <sdk>${aws-java-sdk-v2.version}</sdk>
  </properties>
  <dependencyManagement><dependencies>
    <dependency><groupId>software.amazon.awssdk</groupId><artifactId>bundle</artifactId><version>${sdk}</version></dependency>
    <dependency><groupId>org.wildfly.openssl</groupId><artifactId>wildfly-openssl</artifactId><version>${wildfly.version}</version></dependency>
  </dependencies></dependencyManagement>
</project>"""

AWS_POM = """<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <parent><groupId>org.apache.hadoop</groupId><artifactId>hadoop-project</artifactId><version>3.5.0</version></parent>
  <artifactId>hadoop-aws</artifactId><version>3.5.0</version>
  <dependencies>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-common</artifactId><scope>provided</scope></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-annotations</artifactId></dependency>
    <dependency><groupId>software.amazon.awssdk</groupId><artifactId>bundle</artifactId><scope>compile</scope></dependency>
    <dependency><groupId>org.wildfly.openssl</groupId><artifactId>wildfly-openssl</artifactId><scope>runtime</scope></dependency>
    <dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13</version><scope>test</scope></dependency>
    <dependency><groupId>com.example</groupId><artifactId>optional-thing</artifactId><version>1</version><optional>true</optional></dependency>
  </dependencies>
</project>"""


def test_jar_resolver_follows_pysparks_hadoop() -> None:
    fetch = _script("fetch_s3a_jars")
    # pyspark 4.3.0 bundles Hadoop 3.5.0: hadoop-aws must be exactly that version.
    assert fetch.hadoop_version(spark_home() / "jars") == "3.5.0"
    deps = fetch.runtime_dependencies(AWS_POM, PARENT_POM)
    assert [(d.group, d.name, d.version) for d in deps] == [
        ("software.amazon.awssdk", "bundle", "2.32.9"),
        ("org.wildfly.openssl", "wildfly-openssl", "2.1.4.Final"),
    ]
    assert deps[0].url() == ("https://repo1.maven.org/maven2/software/amazon/awssdk/bundle/2.32.9/bundle-2.32.9.jar")


def test_jar_resolver_refuses_unresolvable_versions() -> None:
    fetch = _script("fetch_s3a_jars")
    broken = PARENT_POM.replace("<aws-java-sdk-v2.version>2.32.9</aws-java-sdk-v2.version>", "")
    with pytest.raises(SystemExit, match="cannot resolve"):
        fetch.runtime_dependencies(AWS_POM, broken)


def test_create_buckets_is_idempotent(s3_bucket: str) -> None:
    create = _script("create_buckets")
    names = [f"{s3_bucket}-lake", f"{s3_bucket}-mlflow"]
    assert create.create_buckets(names) == names
    assert create.create_buckets(names) == []
    existing = {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    assert set(names) <= existing


def test_s3a_settings_come_from_the_boto3_environment() -> None:
    from flightdeck.data.sparkio import s3a_settings

    assert s3a_settings({}) == {}
    assert s3a_settings({"AWS_ENDPOINT_URL": "http://s3:8333", "AWS_DEFAULT_REGION": "us-east-1"}) == {
        "fs.s3a.endpoint": "http://s3:8333",
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.endpoint.region": "us-east-1",
    }
    tls = s3a_settings({"AWS_ENDPOINT_URL_S3": "https://s3.example", "AWS_ENDPOINT_URL": "http://other"})
    assert tls["fs.s3a.endpoint"] == "https://s3.example"
    assert tls["fs.s3a.connection.ssl.enabled"] == "true"
    # Credentials never go into the Spark conf: s3a reads them from the environment itself.
    assert not any("key" in k for k in s3a_settings({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}))


@pytest.mark.spark
def test_build_session_puts_s3a_settings_into_hadoop_conf(spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flightdeck.data.sparkio import build_session

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    session = build_session("s3a-settings")
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    try:
        assert hadoop.get("fs.s3a.endpoint") == "http://127.0.0.1:9"
        assert hadoop.get("fs.s3a.path.style.access") == "true"
        assert hadoop.get("fs.s3a.endpoint.region") == "eu-west-1"
    finally:
        for key in ("fs.s3a.endpoint", "fs.s3a.path.style.access", "fs.s3a.endpoint.region"):
            hadoop.unset(key)


def test_image_paths_exist() -> None:
    for path in ("deploy/mlflow-server.sh", "deploy/seaweedfs-s3.sh", "deploy/postgres-init.sh"):
        assert (ROOT / path).stat().st_mode & 0o111, f"{path} must be executable (the image runs it)"
    assert Path(ROOT / "deploy" / "fetch_s3a_jars.py").is_file()
