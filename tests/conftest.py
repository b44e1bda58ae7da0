"""Shared fixtures: a real OPA serving the built bundle, the demo upstream, test keys."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import settings

from bundles.build import build
from sidecar import create_app
from sidecar.devtoken import mint

from . import processes
from .roster import Roster
from .tokens import BoundToken

TEST_KID = "care-app-test-1"

# Property-based tests explore the same examples on every run: CI stays deterministic,
# and a failure found once is found again.
settings.register_profile("lcr", derandomize=True)
settings.load_profile("lcr")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole session (tests/pgcluster.py)."""
    from .pgcluster import PgCluster

    cluster = PgCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_databases(pg_cluster: Any) -> Any:
    """Fresh migrated databases on the session's cluster: `pg_databases.new()`."""
    from .pgcluster import PgDatabases

    return PgDatabases(pg_cluster)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="session")
def roster(run_dir: Path) -> Roster:
    """The session's roster of service users (tests/roster.py), published beside the policy."""
    made = Roster(run_dir / "bundles", processes.opa_binary())
    made.publish()
    return made


@pytest.fixture(scope="session")
def bundle_revision(run_dir: Path, roster: Roster) -> str:
    return build(run_dir / "bundles", opa=processes.opa_binary())


@pytest.fixture(scope="session")
def bundle_server(run_dir: Path, bundle_revision: str) -> Iterator[processes.Process]:
    server = processes.start_bundle_server(run_dir / "bundles" / "serve", run_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def opa(bundle_server: processes.Process, run_dir: Path) -> Iterator[processes.Process | processes.ContainerProcess]:
    server = processes.start_opa(bundle_server.url, run_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def upstream(run_dir: Path) -> Iterator[processes.Process]:
    server = processes.start_upstream(run_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def private_pem(signing_key: rsa.RSAPrivateKey) -> bytes:
    return signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="session")
def jwks_file(run_dir: Path, signing_key: rsa.RSAPrivateKey) -> Path:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update({"kid": TEST_KID, "alg": "RS256", "use": "sig"})
    path = run_dir / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path


@pytest.fixture(scope="session")
def token(private_pem: bytes) -> Callable[..., str]:
    """token("senior_carer", org="VM101", ...) → a token signed with the test key, bound
    to the seed resident 9990000018 unless `nhs_number=` names another (None: unbound)."""

    def make(level: str | None, nhs_number: str | None = "9990000018", **kw: Any) -> str:
        kw.setdefault("private_key", private_pem)
        kw.setdefault("kid", TEST_KID)
        value = mint(level, nhs_number=nhs_number, **kw)
        return BoundToken(value, lambda other: make(level, nhs_number=other, **kw))

    return make


@pytest.fixture
def config(tmp_path: Path, opa: processes.Process, upstream: processes.Process, jwks_file: Path) -> dict[str, Any]:
    return {
        "TESTING": True,
        "OPA_URL": opa.url,
        "UPSTREAM_URL": upstream.url + "/fhir",
        "AUDIT_DB": str(tmp_path / "audit.db"),
        "TOKEN_JWKS_FILE": str(jwks_file),
    }


@pytest.fixture
def make_app(config: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """make_app(OPA_URL=...) → a sidecar app on the test config plus overrides; closed after the test."""
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        made.append(create_app(test_config={**config, **overrides}))
        return made[-1]

    yield make
    for app in made:
        app.extensions["lcr"].close()


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    return make_app()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def audit_rows(app: Any) -> Callable[[], list[dict[str, Any]]]:
    return lambda: list(app.extensions["lcr"].audit.rows())
