"""python -m audit_store …  (the same as `lcr-audit …`)."""

from .cli import main

main()
