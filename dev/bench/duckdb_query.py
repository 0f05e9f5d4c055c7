"""DuckDB baseline for `bonebank-node bench query`.

Runs the benchmark's query without privacy (no noise, no contribution
bounds) on the same Parquet files, in process, after loading them into
DuckDB's memory, and prints JSON with the timings in milliseconds.
"""
import json
import statistics
import sys
import time

import duckdb


def main() -> None:
    samples, donors, diagnoses, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    con = duckdb.connect()
    con.execute(f"CREATE TABLE samples AS SELECT * FROM read_parquet('{samples}')")
    con.execute(f"CREATE TABLE donors AS SELECT * FROM read_parquet('{donors}')")
    con.execute(f"CREATE TABLE diagnoses AS SELECT * FROM read_parquet('{diagnoses}') WHERE is_primary")
    times = []
    for i in range(runs):
        low = 40 + i % 20
        sql = f"""
            SELECT s.sample_type, COUNT(DISTINCT s.donor_id) AS donors, COUNT(*) AS samples
            FROM samples s JOIN donors d ON s.donor_id = d.donor_id AND NOT d.consent_withdrawn
            LEFT JOIN diagnoses x ON x.sample_id = s.sample_id
            WHERE d.sex = 'Female' AND s.age_at_sampling BETWEEN {low} AND 90 AND x.diagnosis LIKE 'S72%'
            GROUP BY s.sample_type"""
        started = time.perf_counter()
        con.execute(sql).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(json.dumps({
        "duckdb_version": duckdb.__version__,
        "runs": runs,
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    }))


if __name__ == "__main__":
    main()
