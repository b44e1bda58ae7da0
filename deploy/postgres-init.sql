-- First start of the compose file's PostgreSQL (docker-entrypoint-initdb.d), as its owner.
-- The schema itself comes from `lcr-audit migrate` (the audit-migrate service); here only
-- the roles: the group the migrations grant INSERT and SELECT to, and the sidecars' login
-- role in it. DEV-ONLY password: a deployment sets its own (and TLS, and pg_hba rules).
CREATE ROLE lcr_audit_writer NOLOGIN;
CREATE ROLE lcr_audit_reader NOLOGIN;
CREATE ROLE lcr_sidecar LOGIN PASSWORD 'dev-only-sidecar' IN ROLE lcr_audit_writer;
CREATE ROLE lcr_auditor LOGIN PASSWORD 'dev-only-auditor' IN ROLE lcr_audit_reader;
