"""Reading canonical tables into Spark: parquet, CSV, or a Hive/catalog table.

A *source* is a string:

* ``table:db.events`` (or ``hive:db.events``): a table of the session's catalog, e.g. a Hive table
  when the session has a metastore (``enableHiveSupport()``, ``hive-site.xml`` on the classpath);
* a path ending in ``.csv`` or ``.csv.gz``, or a folder of them (``format="csv"``): CSV with a header,
  every column read as text and cast (an unparseable timestamp becomes null, which cleaning
  quarantines as ``unparseable_ts`` instead of failing the job);
* anything else: parquet (a file, a folder of part files, a glob; ``hdfs://``, ``s3a://`` ... as the
  cluster allows).

Columns are selected and cast to the canonical schema (:mod:`musicrecall.schema`); missing optional
columns become null, extra columns are dropped (``_row``, the source order, is kept when present).
"""

from __future__ import annotations

import polars as pl
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from musicrecall.schema import SCHEMAS

_TYPES: dict[type, T.DataType] = {
    pl.Int64: T.LongType(), pl.Int32: T.IntegerType(), pl.String: T.StringType(), pl.Boolean: T.BooleanType(),
    pl.Float64: T.DoubleType(), pl.Datetime: T.TimestampType(),
}


def spark_type(dtype: pl.DataType) -> T.DataType:
    """The Spark type of a canonical polars type."""
    return _TYPES[dtype.base_type()]


def spark_schema(table: str) -> T.StructType:
    """The canonical schema of ``table`` (``events``, ``items``, ``users``, ``triples``) in Spark types."""
    return T.StructType([T.StructField(name, spark_type(dtype)) for name, dtype in SCHEMAS[table].items()])


def _cast_text(col: Column, target: T.DataType) -> Column:
    # text from CSV: try_* casts give null on garbage instead of failing the job (ANSI mode)
    if isinstance(target, T.TimestampType):
        return F.try_to_timestamp(col)
    if isinstance(target, T.BooleanType):
        low = F.lower(F.trim(col))
        return F.when(low.isin("true", "1", "t", "yes"), True).when(low.isin("false", "0", "f", "no"), False)
    return col.try_cast(target)


def conform_spark(df: DataFrame, table: str) -> DataFrame:
    """Select and cast ``df`` to the canonical schema of ``table``; missing columns become null.

    Text columns (CSV) are cast leniently (``try_cast``: unparseable -> null); typed columns strictly.
    """
    exprs = []
    for field in spark_schema(table).fields:
        if field.name not in df.columns:
            exprs.append(F.lit(None).cast(field.dataType).alias(field.name))
            continue
        source_type = df.schema[field.name].dataType
        col = F.col(field.name)
        if isinstance(source_type, T.StringType) and not isinstance(field.dataType, T.StringType):
            col = _cast_text(col, field.dataType)
        elif source_type != field.dataType:
            col = col.cast(field.dataType)
        exprs.append(col.alias(field.name))
    if table == "events" and "_row" in df.columns:
        exprs.append(F.col("_row").cast(T.LongType()))
    return df.select(exprs)


def read_table(spark: SparkSession, source: str, table: str, format: str | None = None) -> DataFrame:
    """Read ``source`` (see the module docstring) as the canonical ``table``."""
    for prefix in ("table:", "hive:"):
        if source.startswith(prefix):
            return conform_spark(spark.table(source[len(prefix):]), table)
    fmt = format or ("csv" if source.endswith((".csv", ".csv.gz")) else "parquet")
    if fmt == "csv":
        # RFC 4180 quoting ("" inside quotes), as polars, pandas and most exporters write it
        raw = spark.read.option("header", True).option("inferSchema", False).option("escape", '"').csv(source)
    elif fmt == "parquet":
        raw = spark.read.parquet(source)
    else:
        raise ValueError(f"format {fmt!r}: expected 'parquet' or 'csv'")
    return conform_spark(raw, table)
