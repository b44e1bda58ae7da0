"""A writer process for the concurrency and crash tests.

    python -m tests.audit_store.writer DB --name A --rows 200 --threads 4 [--key KEY]

Appends rows from several threads and prints `seq decision_id` for each one once append()
has returned (that is, once it is committed); with --rows 0 it appends until killed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import uuid

from audit_store import AuditStore

from .conftest import event


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--name", default="w")
    parser.add_argument("--rows", type=int, default=100, help="per thread; 0 = until killed")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--key")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    args = parser.parse_args()
    store = AuditStore(args.db, checkpoint_key=args.key, checkpoint_every=args.checkpoint_every, busy_timeout_ms=10000)
    out = threading.Lock()

    def work(t: int) -> None:
        i = 0
        while args.rows == 0 or i < args.rows:
            e = event(i, decision_id=f"{args.name}-{t}-{i}-{uuid.uuid4().hex[:8]}", subject_id=f"{args.name}-{t}")
            seq = store.append(e)
            with out:
                sys.stdout.write(f"{seq} {e.decision_id}\n")
                sys.stdout.flush()
            i += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()


if __name__ == "__main__":
    main()
