"""Getting a SparkSession: the user's (cluster, spark-submit) or a private local one (tests, notebooks).

On a cluster, ``spark-submit`` (or the user's own ``SparkSession.builder...getOrCreate()``) creates the
session first and :func:`get_spark` simply returns it: master, memory, Hive metastore and
executors are the user's configuration, untouched. Only when no session is active does
:func:`get_spark` start a local one, ``local[n]`` with the JVM on this machine, bound to 127.0.0.1
with the web UI off, so nothing listens on or reaches the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from pyspark.sql import SparkSession

# Settings every session needs for the two engines to agree (UTC days and timestamps, parquet
# timestamps polars reads exactly); applied to the user's session too, they change no cluster setting.
SQL_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
LOOPBACK = "127.0.0.1"


def java_available() -> bool:
    """Whether a Java runtime for a local Spark is on this machine (``JAVA_HOME`` or ``java`` on PATH)."""
    home = os.environ.get("JAVA_HOME")
    return bool(home and (Path(home) / "bin" / "java").exists()) or shutil.which("java") is not None


def local_session(cores: int | None = None, memory: str = "3g", hive: bool = False,
                  app_name: str = "musicrecall", extra: dict[str, str] | None = None) -> SparkSession:
    """A local-mode session (``local[cores]``; all cores when None) that needs no network.

    The driver binds to 127.0.0.1 (``spark.driver.host``/``bindAddress`` and ``SPARK_LOCAL_IP``), the UI
    is off, and shuffles use a few partitions (the default 200 is tuned for clusters, and costs seconds of
    task overhead on small data). ``hive=True`` enables a local Derby metastore under a temporary
    folder, for ``table:`` inputs. Driver memory only applies when this call starts the JVM.
    """
    if not java_available():
        raise RuntimeError("a local Spark needs a Java runtime (17 or 21): install one or set JAVA_HOME")
    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    n = cores or os.cpu_count() or 1
    scratch = Path(tempfile.gettempdir()) / f"musicrecall-spark-{os.getuid()}"
    builder = (
        SparkSession.builder.master(f"local[{n}]").appName(app_name)
        .config("spark.driver.host", LOOPBACK)
        .config("spark.driver.bindAddress", LOOPBACK)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", memory)
        .config("spark.sql.shuffle.partitions", str(max(4, 2 * n)))
        .config("spark.default.parallelism", str(max(4, 2 * n)))
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.local.dir", str(scratch / "local"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={scratch / 'derby'}")
    )
    for key, value in {**SQL_SETTINGS, **(extra or {})}.items():
        builder = builder.config(key, value)
    if hive:
        builder = builder.enableHiveSupport()
    with warnings.catch_warnings():
        # pyspark 4.3 warns that pandas 3 is not fully supported; data never goes through pandas here
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def get_spark(cores: int | None = None) -> SparkSession:
    """The active session (spark-submit, a cluster notebook, the user's builder) or a local one.

    ``cores`` only sizes a local session this call starts. The SQL settings both engines rely on
    (UTC session time zone, microsecond parquet timestamps) are set on whichever session is returned.
    """
    spark = SparkSession.getActiveSession()
    if spark is None:
        from musicrecall.config import n_threads

        return local_session(cores or n_threads())
    for key, value in SQL_SETTINGS.items():
        spark.conf.set(key, value)
    return spark
