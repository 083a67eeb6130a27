"""A reader that loops `SELECT as_of, count(*) FROM segment_membership` against `segflow serve`
until STOP exists, each answer a JSON line on stdout (tests/it/outputs/serve.rs): what a BI
dashboard sees while nights publish.

    serve_load.py PORT USER PASSWORD STOP
"""

import json
import os
import sys
import time

import psycopg

PORT, USER, PASSWORD, STOP = sys.argv[1:5]
DSN = f"host=127.0.0.1 port={PORT} user={USER} password={PASSWORD} dbname=segflow connect_timeout=30"

with psycopg.connect(DSN, autocommit=True) as conn:
    deadline = time.monotonic() + 240
    while not os.path.exists(STOP) and time.monotonic() < deadline:
        try:
            rows = conn.execute(
                "SELECT CAST(as_of AS VARCHAR), count(*) FROM segment_membership GROUP BY as_of"
            ).fetchall()
            print(json.dumps({"groups": [[a, n] for a, n in rows]}), flush=True)
        except psycopg.Error as error:
            print(json.dumps({"error": f"{error.sqlstate}: {error}"}), flush=True)
