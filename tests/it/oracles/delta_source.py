"""Turns a generated shop's orders into a Delta table in place, for delta.rs: version 0 holds
the orders as generated, version 1 overwrites them with every order refunded in full (its
files replace version 0's in the log, while version 0's stay in the folder, as an update in
place leaves them). The log entries' times put version 0 before the end of the night AS_OF
and version 1 after it; `partitioned` writes a partitioned table beside it instead.

Usage: delta_source.py ORDERS_DIR AS_OF [partitioned]"""
import datetime as dt, glob, os, shutil, sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
from deltalake import write_deltalake

folder, as_of = sys.argv[1:3]
partitioned = sys.argv[3:] == ["partitioned"]
files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
orders = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
shutil.rmtree(folder)
if partitioned:
    write_deltalake(folder, orders, partition_by=["currency"])
    sys.stdout.flush()
    os._exit(0)  # deltalake's runtime threads may abort the interpreter's own exit
write_deltalake(folder, orders)
refunded = orders.set_column(
    orders.schema.get_field_index("refunded_amount"), "refunded_amount",
    orders.column("total_amount"))
write_deltalake(folder, refunded, mode="overwrite")
night_end = dt.datetime.fromisoformat(as_of).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
for version, at in [(0, night_end - dt.timedelta(hours=20)), (1, night_end + dt.timedelta(hours=3))]:
    entry = os.path.join(folder, "_delta_log", f"{version:020}.json")
    os.utime(entry, (at.timestamp(), at.timestamp()))
print(len(glob.glob(os.path.join(folder, "*.parquet"))))
sys.stdout.flush()
os._exit(0)
