"""Build `policies/` into a signed OPA bundle whose revision names its content.

    python -m bundles.build                       # → var/bundles, dev signing key
    python -m bundles.build --out DIR --signing-key KEY.pem --key-id prod-2026

writes `<out>/archive/<revision>.tar.gz` (kept forever, so a logged decision can be
replayed against exactly the policy that made it) and publishes it atomically as
`<out>/serve/lcr.tar.gz` (what the bundle server hands OPA), then prints the revision.
The revision is a hash of the policy files, so the same content always gets the same
revision; the git commit and build time ride along in the manifest's metadata.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
BUNDLE_NAME = "lcr.tar.gz"
DEV_SIGNING_KEY = ROOT / "dev" / "keys" / "bundle-signing-dev-private.pem"
DEV_VERIFICATION_KEY = ROOT / "dev" / "keys" / "bundle-signing-dev-public.pem"
DEFAULT_KEY_ID = "lcr-bundle-signing"


def opa_binary() -> str:
    return subprocess.run(
        [str(ROOT / "scripts" / "tools.sh"), "opa"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _policy_files(policies: Path) -> list[Path]:
    # Tests stay beside the policies but never ship in a bundle.
    return sorted(p for p in policies.rglob("*") if p.is_file() and not p.name.endswith("_test.rego"))


def content_revision(policies: Path = POLICIES) -> str:
    """A hash over every file the bundle is built from (paths and bytes)."""
    digest = hashlib.sha256()
    for path in _policy_files(policies):
        digest.update(path.relative_to(policies).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256-" + digest.hexdigest()[:20]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def build(
    out: Path,
    policies: Path = POLICIES,
    opa: str | None = None,
    signing_key: Path | None = None,
    key_id: str | None = None,
    publish: bool = True,
) -> str:
    signing_key = signing_key or Path(os.environ.get("LCR_BUNDLE_SIGNING_KEY", DEV_SIGNING_KEY))
    key_id = key_id or os.environ.get("LCR_BUNDLE_SIGNING_KEY_ID", DEFAULT_KEY_ID)
    revision = content_revision(policies)
    serve, archive = out / "serve", out / "archive"
    serve.mkdir(parents=True, exist_ok=True)
    archive.mkdir(parents=True, exist_ok=True)
    archived = archive / f"{revision}.tar.gz"
    if not archived.exists():  # a revision, once archived, is never rewritten
        with tempfile.TemporaryDirectory() as tmp:
            stage = Path(tmp) / "bundle"
            for path in _policy_files(policies):
                target = stage / path.relative_to(policies)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            manifest = json.loads((policies / ".manifest").read_text())
            manifest["revision"] = revision
            manifest["metadata"] = {
                "git_commit": _git_commit(),
                "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            (stage / ".manifest").write_text(json.dumps(manifest))
            sign_and_archive(stage, revision, archived, opa, signing_key, key_id)
    if publish:
        publish_bundle(archived, serve)
    return revision


def sign_and_archive(
    stage: Path, revision: str, archived: Path, opa: str | None, signing_key: Path, key_id: str, mode: int = 0o644
) -> None:
    """`opa build` the staged folder into a signed bundle and write it to `archived` atomically.

    stage: the bundle's files (its .manifest included); mode: the archived file's permissions
    (0o600 for bundles that hold personal data). Raises subprocess.CalledProcessError when
    `opa build` refuses the stage.
    """
    with tempfile.TemporaryDirectory() as tmp:
        claims = Path(tmp) / "claims.json"
        claims.write_text(json.dumps({"keyid": key_id}))
        partial = Path(tmp) / "bundle.tar.gz"
        subprocess.run(
            [
                # Built from inside the stage so file paths in the bundle are the same on
                # every machine.
                opa or opa_binary(),
                "build",
                "--bundle",
                ".",
                "--revision",
                revision,
                "--signing-key",
                str(signing_key),
                "--claims-file",
                str(claims),
                "--output",
                str(partial),
            ],
            check=True,
            cwd=stage,
            stdout=subprocess.DEVNULL,
        )
        os.chmod(partial, mode)
        shutil.copy(partial, archived.with_suffix(".tmp"))
        archived.with_suffix(".tmp").replace(archived)


def publish_bundle(bundle: Path, serve: Path, name: str = BUNDLE_NAME) -> None:
    """Atomically make `bundle` the one the bundle server hands out as `name`: OPA never reads half a file."""
    serve.mkdir(parents=True, exist_ok=True)
    tmp = serve / (name + ".tmp")
    shutil.copy(bundle, tmp)  # permissions too: a roster stays readable by its owner only
    tmp.replace(serve / name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "var" / "bundles", help="output folder (serve/ and archive/)"
    )
    parser.add_argument("--policies", type=Path, default=POLICIES, help="policy folder to build")
    parser.add_argument(
        "--signing-key", type=Path, help="PEM private key (default $LCR_BUNDLE_SIGNING_KEY or the DEV key)"
    )
    parser.add_argument(
        "--key-id", help=f"key id OPA verifies with (default $LCR_BUNDLE_SIGNING_KEY_ID or {DEFAULT_KEY_ID})"
    )
    parser.add_argument("--no-publish", action="store_true", help="archive only; do not replace serve/lcr.tar.gz")
    parser.add_argument(
        "--publish-archived",
        metavar="REVISION",
        help="roll back/forward: publish an archived revision as it was signed, build nothing",
    )
    args = parser.parse_args(argv)
    if args.publish_archived:
        archived = args.out / "archive" / f"{args.publish_archived}.tar.gz"
        if not archived.exists():
            parser.error(f"no archived bundle {archived}; see {args.out / 'archive'}")
        publish_bundle(archived, args.out / "serve")
        print(args.publish_archived)
        return
    print(build(args.out, args.policies, signing_key=args.signing_key, key_id=args.key_id, publish=not args.no_publish))


if __name__ == "__main__":
    main()
