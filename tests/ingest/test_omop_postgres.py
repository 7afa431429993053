"""OMOP reader against a real, throwaway PostgreSQL server loaded with Eunomia (CDM 5.4 DDL)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from trialsieve.ingest import omop
from trialsieve.ingest.runner import run_ingest
from trialsieve.store import open_store
from trialsieve.store.writer import IngestSummary, StoreWriter

psycopg = pytest.importorskip("psycopg")

BIN = Path("/usr/local/bin")
EUNOMIA = "omop_eunomia_synthea27nj/Synthea27Nj_5.4.zip"
DDL = "omop_cdm_ddl/OMOPCDM_postgresql_5.4_ddl.sql"
TABLES = ("person", "death", "concept", "measurement", "observation", "condition_occurrence",
          "procedure_occurrence", "drug_exposure", "visit_occurrence")  # fmt: skip
EVENT_COLS = (
    "patient_id, kind, analyte, code_system, code, display, start_time, end_time, value, unit, "
    "value_text, orig_value, orig_unit, ref_low, ref_high, dose_value, dose_unit, route, status, "
    "source"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_pg_user(cmd: list[str]) -> list[str]:
    """initdb/postgres refuse to run as root: run them as the 'postgres' user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        pytest.skip("PostgreSQL binaries (/usr/local/bin/initdb, pg_ctl) not installed")
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
    tmp = Path(tempfile.mkdtemp(prefix="trialsieve-pg-"))
    data = tmp / "data"
    if os.geteuid() == 0:
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        _as_pg_user([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                     "-E", "UTF8", "--no-sync"]), **run)  # fmt: skip
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_pg_user([str(BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                     str(tmp / "log"), "-w", "start"]), **run)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_pg_user([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


def _load_eunomia(url: str, shared_data: Path, schema: str) -> None:
    ddl = (shared_data / DDL).read_text().replace("@cdmDatabaseSchema", schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(ddl)
        with zipfile.ZipFile(shared_data / EUNOMIA) as z:
            for table in TABLES:
                raw = z.read(f"{table.upper()}.csv")
                header = raw.split(b"\n", 1)[0].decode().strip()
                sql = f"COPY {schema}.{table} ({header}) FROM STDIN WITH (FORMAT csv, HEADER true)"
                with conn.cursor() as cur, cur.copy(sql) as copy:
                    copy.write(raw)


def _ingest_url(url: str, store: Path) -> IngestSummary:
    """run_ingest() checks that SOURCE exists as a path, so a URL goes to the reader directly."""
    writer = StoreWriter(store, "eunomia")
    omop.read(url, writer)
    return writer.close()


def _rows(store: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    open_store(store, con)
    return con.execute(sql).fetchall()


def test_postgres_matches_csv_ingest(pg_url: str, shared_data: Path, tmp_path: Path) -> None:
    _load_eunomia(pg_url, shared_data, "cdm")
    pg_store, csv_store = tmp_path / "pg", tmp_path / "csv"
    s_pg = _ingest_url(f"{pg_url}?schema=cdm", pg_store)
    s_csv = run_ingest("omop", shared_data / EUNOMIA, csv_store, dataset="eunomia")
    assert s_pg.balanced()
    assert {k: (c.read, c.stored) for k, c in s_pg.by_type.items()} == {
        k: (c.read, c.stored) for k, c in s_csv.by_type.items()
    }
    assert s_pg.by_type["measurement"].read == 10040
    q = f"SELECT {EVENT_COLS} FROM events ORDER BY source, code"
    assert _rows(pg_store, q) == _rows(csv_store, q)
    p = "SELECT * EXCLUDE (dataset) FROM patients ORDER BY patient_id"
    assert _rows(pg_store, p) == _rows(csv_store, p)


def test_postgres_schema_is_found_without_parameter(
    pg_url: str, shared_data: Path, tmp_path: Path
) -> None:
    _load_eunomia(pg_url, shared_data, "cdm")
    s = _ingest_url(pg_url, tmp_path)
    assert s.balanced()
    assert s.by_type["person"].stored == 28


def test_postgres_url_through_run_ingest(pg_url: str, shared_data: Path, tmp_path: Path) -> None:
    from trialsieve.ingest.runner import masked_url, run_ingest

    _load_eunomia(pg_url, shared_data, "cdm")
    s = run_ingest("omop", f"{pg_url}?schema=cdm", tmp_path)
    assert s.balanced()
    manifest = (tmp_path / "manifest.json").read_text()
    assert masked_url(pg_url) in manifest
    assert masked_url("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
