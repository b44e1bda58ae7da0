"""Policy bundles: build `policies/` into a revisioned OPA bundle and archive it."""
