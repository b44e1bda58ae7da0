"""Render OPA's configuration: poll the bundle server, verify signatures, persist the bundle.

    python -m bundles.opa_config --out var/opa/config.yaml

The bundle server's URL stays `${BUNDLE_SERVER_URL}`, which OPA fills from its
environment, so one rendered file serves `make run`, the tests and docker-compose.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from .build import DEFAULT_KEY_ID, DEV_VERIFICATION_KEY, ROOT


def render(
    verification_key: Path | None = None,
    key_id: str | None = None,
    persistence_directory: str | None = None,
    min_delay_seconds: int = 1,
    max_delay_seconds: int = 2,
) -> str:
    verification_key = verification_key or Path(os.environ.get("LCR_BUNDLE_VERIFICATION_KEY", DEV_VERIFICATION_KEY))
    key_id = key_id or os.environ.get("LCR_BUNDLE_SIGNING_KEY_ID", DEFAULT_KEY_ID)
    config = {
        "services": {"bundles": {"url": "${BUNDLE_SERVER_URL}"}},
        "keys": {key_id: {"algorithm": "RS256", "key": verification_key.read_text()}},
        "bundles": {
            "lcr": {
                "service": "bundles",
                "resource": "lcr.tar.gz",
                # An unsigned or tampered bundle is refused; the previous one keeps serving.
                "signing": {"keyid": key_id},
                # OPA starts from the last activated bundle when the bundle server is down.
                "persist": True,
                "polling": {"min_delay_seconds": min_delay_seconds, "max_delay_seconds": max_delay_seconds},
            },
            # The care app's roster of service users (bundles/roster.py), a bundle of its own
            # so it can change every few seconds without a policy release. Its root
            # (`roster`) is disjoint from the policy's (`lcr`). Signed and persisted the same
            # way; it is personal data, and OPA's persistence directory holds a copy.
            "roster": {
                "service": "bundles",
                "resource": "roster.tar.gz",
                "signing": {"keyid": key_id},
                "persist": True,
                "polling": {"min_delay_seconds": min_delay_seconds, "max_delay_seconds": max_delay_seconds},
            },
        },
        # Bundle download/activation times as Prometheus gauges: readiness reads them.
        "status": {"prometheus": True},
        # No decision_logs section: the sidecar's audit store is the record of decisions.
        # Configured without a service of its own, OPA would post its logs to the bundle
        # server (which refuses them) and keep every refused event in memory.
    }
    if persistence_directory:
        config["persistence_directory"] = persistence_directory
    return yaml.safe_dump(config, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "opa" / "config.yaml")
    parser.add_argument(
        "--verification-key", type=Path, help="PEM public key (default $LCR_BUNDLE_VERIFICATION_KEY or the DEV key)"
    )
    parser.add_argument("--key-id", help="key id the bundles are signed with")
    parser.add_argument("--persistence-directory", help="where OPA keeps the last activated bundle")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.verification_key, args.key_id, args.persistence_directory))
    print(args.out)


if __name__ == "__main__":
    main()
