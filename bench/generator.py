"""Scale the 2013 flights by an integer factor: new keys per replica, the same distributions.

Replica 0 is the real data, untouched. Replica ``r > 0`` is every real row again with
``flight + r * FLIGHT_OFFSET`` (2013 flight numbers stay below 10,000, so the business key
``carrier, flight, origin, time_hour, minute`` stays unique), ``tailnum`` suffixed with
``~r`` (the planes reference table is scaled the same way, so the plane lookup still
matches), and the departure and arrival delays (and the actual times with them) shifted
by the same deterministic jitter in ``[-MAX_JITTER, MAX_JITTER]`` minutes. Scheduled times,
routes, carriers and weather stay those of the real day: the schedule-driven features and
the as-of weather join see realistic inputs, just more of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

FLIGHT_OFFSET = 10_000
MAX_JITTER = 5
REPLICA = "__replica"


def _jitter(seed: int) -> Column:
    """A deterministic integer in [-MAX_JITTER, MAX_JITTER] per (row key, replica); 0 for replica 0."""
    from pyspark.sql import functions as F

    h = F.xxhash64("carrier", "flight", "origin", "time_hour", "minute", F.col(REPLICA), F.lit(seed))
    noise = F.pmod(h, F.lit(2 * MAX_JITTER + 1)) - F.lit(MAX_JITTER)
    return F.when(F.col(REPLICA) == 0, F.lit(0)).otherwise(noise).cast("int")


def _shift_hhmm(col: str, minutes: Column) -> Column:
    """An ``hhmm`` clock time moved by ``minutes``, wrapped around midnight; null stays null."""
    from pyspark.sql import functions as F

    c = F.col(col)
    total = F.pmod(F.floor(c / 100) * 60 + F.pmod(c, F.lit(100)) + minutes, F.lit(1440))
    return F.when(c.isNull(), F.lit(None)).otherwise(F.floor(total / 60) * 100 + F.pmod(total, F.lit(60))).cast("int")


def scale_flights(flights: DataFrame, factor: int, seed: int = 2013) -> DataFrame:
    """``factor`` replicas of the bronze flights (same columns and types); see the module docstring."""
    from pyspark.sql import functions as F

    if factor < 1:
        raise ValueError(f"scale factor must be >= 1, got {factor}")
    replicas = flights.sparkSession.range(factor).select(F.col("id").cast("int").alias(REPLICA))
    rows = flights.crossJoin(F.broadcast(replicas)).withColumn("__jitter", _jitter(seed))
    r, j = F.col(REPLICA), F.col("__jitter")
    changed = {
        "flight": (F.col("flight") + r * FLIGHT_OFFSET).cast("int"),
        "tailnum": F.when((r == 0) | F.col("tailnum").isNull(), F.col("tailnum")).otherwise(
            F.concat(F.col("tailnum"), F.lit("~"), r.cast("string"))
        ),
        "dep_delay": (F.col("dep_delay") + j).cast("double"),
        "arr_delay": (F.col("arr_delay") + j).cast("double"),
        "dep_time": _shift_hhmm("dep_time", j),
        "arr_time": _shift_hhmm("arr_time", j),
    }
    return rows.select(*[changed[c].alias(c) if c in changed else F.col(c) for c in flights.columns])


def scale_planes(planes: DataFrame, factor: int) -> DataFrame:
    """The planes reference table with one copy per replica, ``tailnum`` suffixed as in :func:`scale_flights`."""
    from pyspark.sql import functions as F

    replicas = planes.sparkSession.range(factor).select(F.col("id").cast("int").alias(REPLICA))
    rows = planes.crossJoin(F.broadcast(replicas))
    r = F.col(REPLICA)
    tail = F.when(r == 0, F.col("tailnum")).otherwise(F.concat(F.col("tailnum"), F.lit("~"), r.cast("string")))
    return rows.select(*[tail.alias(c) if c == "tailnum" else F.col(c) for c in planes.columns])
