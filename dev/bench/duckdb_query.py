"""DuckDB baseline for `bonebank-dev bench node`.

Loads the node's own query surface (the pre-joined rows the node's engine
reads, written to Parquet by the benchmark) into DuckDB's memory, in this
process, and times two plans over the benchmark's questions (the same age
ranges, in the same order):

- plain: the question without privacy, COUNT(DISTINCT donor) and COUNT(*)
  per sample type;
- bounded: the node's contribution bounding written in SQL: rows per donor
  and sample type, each donor's sample types ranked by a hash seeded per
  question (ROW_NUMBER), at most G of them kept, at most S rows per donor
  and sample type counted (LEAST).

Prints one line per plan.
"""
import statistics
import sys
import time

import duckdb


def ages(i):
    return 40 + i % 20, 70 + (i // 20) % 20


def where(i):
    low, high = ages(i)
    return (f"sex = 'Female' AND age_at_sampling BETWEEN {low} AND {high} "
            f"AND diagnosis LIKE 'S72%'")


def plain(i):
    return (f"SELECT sample_type, COUNT(DISTINCT donor_key) AS donors, COUNT(*) AS samples "
            f"FROM surface WHERE {where(i)} GROUP BY sample_type")


def bounded(i, s, g):
    return f"""
        WITH per AS (
            SELECT sample_type, donor_key, COUNT(*) AS n
            FROM surface WHERE {where(i)} GROUP BY sample_type, donor_key),
        ranked AS (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY donor_key ORDER BY hash(donor_key, sample_type, {i})) AS r
            FROM per)
        SELECT sample_type, COUNT(*) AS donors, SUM(LEAST(n, {s})) AS samples
        FROM ranked WHERE r <= {g} GROUP BY sample_type"""


def timed(con, sqls):
    times = []
    for sql in sqls:
        started = time.perf_counter()
        con.execute(sql).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times), p99, statistics.mean(times), len(times)


def main() -> None:
    surface, runs, s, g = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    con = duckdb.connect()
    con.execute(f"CREATE TABLE surface AS SELECT * FROM read_parquet('{surface}')")
    for name, sqls in [
        ("plain question", [plain(i) for i in range(runs)]),
        (f"bounded plan (S {s}, G {g})", [bounded(i, s, g) for i in range(runs)]),
    ]:
        p50, p99, mean, n = timed(con, sqls)
        print(f"  DuckDB {duckdb.__version__}, {name + ':':28} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
              f"mean {mean:6.2f} ms  ({n} runs, in process, same surface in memory)")


if __name__ == "__main__":
    main()
