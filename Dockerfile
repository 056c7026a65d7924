# One image for every flightdeck service in docker-compose.yaml: Airflow (api-server,
# scheduler, dag-processor, triggerer), the MLflow server, and the Spark master and
# workers, so the jobs run on the same Python and libraries everywhere.
FROM python:3.11.14-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    FLIGHTDECK_HOME=/opt/flightdeck \
    AIRFLOW_HOME=/opt/airflow \
    PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python

RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless procps curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/flightdeck
COPY requirements.txt pyproject.toml README.md ./
RUN pip install --no-cache-dir uv==0.13.9 \
 && uv pip sync --system --no-cache requirements.txt
COPY include ./include
RUN uv pip install --system --no-cache --no-deps -e .
# dags/, plugins/, jobs/ and include/ are mounted by docker-compose.yaml during development.
COPY dags ./dags
COPY plugins ./plugins
COPY jobs ./jobs

RUN useradd --create-home --uid 50000 flightdeck && mkdir -p /opt/airflow && chown -R flightdeck /opt/airflow /opt/flightdeck
USER flightdeck
