"""Build `policies/` into an OPA bundle whose revision names its content.

    python -m bundles.build --out var/bundles

writes `<out>/serve/lcr.tar.gz` (what the bundle server serves to OPA) and
`<out>/archive/<revision>.tar.gz` (kept forever, so a logged decision can be replayed
against exactly the policy that made it), and prints the revision.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
BUNDLE_NAME = "lcr.tar.gz"


def opa_binary() -> str:
    return subprocess.run(
        [str(ROOT / "scripts" / "tools.sh"), "opa"], check=True, capture_output=True, text=True
    ).stdout.strip()


def content_revision(policies: Path = POLICIES) -> str:
    """A hash over every file the bundle is built from (paths and bytes), test files excluded."""
    digest = hashlib.sha256()
    for path in sorted(p for p in policies.rglob("*") if p.is_file() and not p.name.endswith("_test.rego")):
        digest.update(path.relative_to(policies).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256-" + digest.hexdigest()[:20]


def build(out: Path, policies: Path = POLICIES, opa: str | None = None) -> str:
    revision = content_revision(policies)
    serve, archive = out / "serve", out / "archive"
    serve.mkdir(parents=True, exist_ok=True)
    archive.mkdir(parents=True, exist_ok=True)
    archived = archive / f"{revision}.tar.gz"
    subprocess.run(
        [
            opa or opa_binary(), "build", "--bundle", str(policies),
            "--revision", revision,
            # Tests stay beside the policies but never ship in a bundle.
            "--ignore", "*_test.rego",
            "--output", str(archived),
        ],
        check=True,
    )
    tmp = serve / (BUNDLE_NAME + ".tmp")
    shutil.copyfile(archived, tmp)
    tmp.replace(serve / BUNDLE_NAME)  # atomic: OPA never downloads half a bundle
    return revision


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bundles", help="output folder")
    parser.add_argument("--policies", type=Path, default=POLICIES, help="policy folder to build")
    args = parser.parse_args(argv)
    print(build(args.out, args.policies))


if __name__ == "__main__":
    sys.exit(main())
