"""Serve the demo upstream with Flask's development server (demo and local use only).

Example:
    python -m demo_upstream --host 127.0.0.1 --port 8090
    curl 'http://127.0.0.1:8090/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018&birthdate=1938-04-12'
"""

from __future__ import annotations

import argparse
import sys

from .app import create_app
from .errors import DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_upstream",
        description="A small read-only FHIR R4 server over synthetic residents, standing in for the LCR FHIR API.",
        epilog="example:\n  python -m demo_upstream --port 8090 --data-dir demo_upstream/residents",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--data-dir",
        help="folder of collection Bundle *.json files (default: $DEMO_UPSTREAM_DATA_DIR, else the bundled residents/)",
    )
    args = parser.parse_args(argv)
    try:
        app = create_app({"DATA_DIR": args.data_dir} if args.data_dir else None)
    except DataError as exc:
        parser.exit(1, f"demo_upstream: {exc}\n")
    app.run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
